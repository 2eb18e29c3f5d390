"""Profile-guided optimisation with zig: the host's LLVM tools, the training
step, and the merged profile the optimised build is given.

zig 0.17 instruments code for PGO but links no profile runtime and ships no
llvm-profdata. Both come from the host's LLVM, which must be zig's own LLVM
release: a raw profile's format belongs to the runtime that wrote it and the
merged one to the compiler that reads it (docs/toolchain.md, "PGO").

The training run happens in the build's runner (a container, say): the
instrumented interpreter writes raw profiles into the step's output, and
relocpy merges them here, on the host, with the llvm-profdata it checked. A
builder image so needs no LLVM, only the profile runtime, mounted read-only.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from relocpy.errors import RecipeError
from relocpy.models import BuildPlan, Target
from relocpy.toolchain import ZIG_LLVM_MAJOR, zig_dir

LLVM_ROOT = Path(f"/usr/lib/llvm-{ZIG_LLVM_MAJOR}")
# Debian's packages holding each tool (bookworm-security ships zig's LLVM).
PROFDATA_PACKAGE = f"llvm-{ZIG_LLVM_MAJOR}"
RUNTIME_PACKAGE = f"libclang-rt-{ZIG_LLVM_MAJOR}-dev"
# What the training step leaves in its output, and the optimised build reads.
RAW_PROFILE_GLOB = "*.profraw"
MERGED_PROFILE = "cpython.profdata"


class PgoToolsError(RecipeError):
    pass


@dataclass(frozen=True)
class PgoTools:
    profdata: Path  # llvm-profdata, run on the host to merge
    runtime: Path  # libclang_rt.profile-<arch>.a, linked into instrumented programs
    llvm_version: str  # e.g. 22.1.8: the tools' release, equal to zig's clang
    runtime_sha256: str

    @property
    def identity(self) -> dict[str, str]:
        """What a profile depends on besides the sources: keyed by the steps."""
        return {"llvm": self.llvm_version, "profile_runtime_sha256": self.runtime_sha256}


def trains_in_own_step(plan: BuildPlan) -> bool:
    """A PGO variant built with zig trains in a step of its own (the profile
    is then an input of the optimised build); other toolchains run CPython's
    profile-opt, which trains and merges with the compiler's own tools."""
    return "pgo" in plan.variant.options and plan.target.toolchain == "zig"


def find_pgo_tools(target: Target) -> PgoTools:
    """The host's LLVM tools for a PGO build of target, checked against zig's
    clang before any step runs; one line saying what to install if not."""
    profdata = LLVM_ROOT / "bin" / "llvm-profdata"
    if not profdata.is_file():
        raise PgoToolsError(f"a PGO build merges profiles with {profdata}, which is missing "
                            f"(Debian: apt-get install {PROFDATA_PACKAGE})")
    runtime = profile_runtime(target)
    if not runtime.is_file():
        raise PgoToolsError(f"a PGO build links instrumented programs with {runtime}, which is missing "
                            f"(Debian: apt-get install {RUNTIME_PACKAGE})")
    llvm_version = _version(profdata, r"LLVM version (\d+\.\d+\.\d+)")
    clang_version = _version(zig_dir() / "zig", r"clang version (\d+\.\d+\.\d+)", "cc")
    if llvm_version.split(".")[0] != clang_version.split(".")[0]:
        raise PgoToolsError(f"{profdata} is LLVM {llvm_version} but zig's clang is {clang_version}: their profile "
                            f"formats differ; install LLVM {clang_version.split('.')[0]} (Debian: {PROFDATA_PACKAGE} "
                            f"and {RUNTIME_PACKAGE} of that release)")
    return PgoTools(profdata=profdata, runtime=runtime, llvm_version=llvm_version,
                    runtime_sha256=hashlib.sha256(runtime.read_bytes()).hexdigest())


def profile_runtime(target: Target) -> Path:
    return LLVM_ROOT / "lib" / "clang" / str(ZIG_LLVM_MAJOR) / "lib" / "linux" / f"libclang_rt.profile-{target.arch}.a"


def _version(program: Path, pattern: str, *args: str) -> str:
    try:
        output = subprocess.run([str(program), *args, "--version"], capture_output=True, text=True,
                                check=False, timeout=60).stdout
    except OSError as exc:
        raise PgoToolsError(f"cannot run {program}: {exc.strerror}") from None
    found = re.search(pattern, output)
    if not found:
        raise PgoToolsError(f"{program} --version does not say its LLVM version: {output.strip()[:80]!r}")
    return found.group(1)


def merge_profiles(tools: PgoTools, output: Path) -> None:
    """Merge the training's raw profiles into MERGED_PROFILE (the step's
    finish, on the host), and drop the raw ones. No raw profile means the
    training wrote none: a silent fall-back to an unprofiled build is refused."""
    raw = sorted(output.glob(RAW_PROFILE_GLOB))
    if not raw:
        raise PgoToolsError("the PGO training wrote no profile: is the profile runtime linked into the "
                            "instrumented interpreter? (see the step's build.log)")
    merged = output / MERGED_PROFILE
    result = subprocess.run([str(tools.profdata), "merge", "--output", str(merged), *map(str, raw)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PgoToolsError(f"llvm-profdata merge failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    for path in raw:
        path.unlink()
