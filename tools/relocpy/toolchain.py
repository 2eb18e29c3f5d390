"""The compiler environment a target's build scripts run with."""

from __future__ import annotations

from relocpy.errors import RecipeError
from relocpy.models import Target

# Per toolchain: the programs autotools and make should use.
PROGRAMS = {
    "gcc": {"CC": "gcc", "CXX": "g++", "AR": "ar", "RANLIB": "ranlib"},
    "clang": {"CC": "clang", "CXX": "clang++", "AR": "ar", "RANLIB": "ranlib"},
}


def toolchain_env(target: Target) -> dict[str, str]:
    programs = PROGRAMS.get(target.toolchain)
    if programs is None:
        raise RecipeError(f"targets.toml: [{target.triple}].toolchain: '{target.toolchain}' is not supported by this host's runners")
    return {
        **programs,
        "CFLAGS": " ".join(target.cflags),
        "LDFLAGS": " ".join(target.ldflags),
    }
