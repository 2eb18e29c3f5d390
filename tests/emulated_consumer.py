"""relocpy's installer run by a built interpreter of another platform: a venv
of that interpreter (under qemu, or through the musl loader) holding
relocpy's consumer dependencies as that platform's wheels, fetched by this
host's pip and installed offline by the emulated one. Shared by the cross
end-to-end test and tools/verify_targets.py --installer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from relocpy.emulation import emulation_env
from relocpy.models import ArtifactKey, ArtifactMetadata, PlatformPolicy

ROOT = Path(__file__).resolve().parents[1]
# relocpy's consumer side (pyproject.toml: dependencies).
CONSUMER_REQUIREMENTS = ["pydantic>=2.6", "packaging>=24", "certifi", "cryptography>=42", "isal>=1.6", "rich>=13"]


def wheel_platforms(platform: PlatformPolicy) -> list[str]:
    """pip's --platform values whose wheels the platform runs: its own tag, and
    the older spellings projects still publish under."""
    arch = platform.arch
    if platform.libc == "musl":
        return [f"musllinux_1_2_{arch}", f"musllinux_1_1_{arch}"]
    return [f"manylinux_2_17_{arch}", f"manylinux2014_{arch}"]


def consumer_venv(archive: Path, scratch: Path) -> tuple[Path, dict[str, str]]:
    """(the venv's python, the environment that runs it) for the install_only
    archive `archive`, unpacked under scratch."""
    meta = ArtifactMetadata.model_validate_json(Path(f"{archive}.json").read_text())
    platform = meta.validation.platform
    minor = ".".join(meta.python_version.split(".")[:2])
    unpacked = scratch / "python"
    unpacked.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(unpacked)], check=True)
    wheels = scratch / "wheels"
    platforms = [arg for p in wheel_platforms(platform) for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(wheels),
                    *platforms, "--python-version", minor, "--implementation", "cp", *CONSUMER_REQUIREMENTS],
                   check=True, timeout=600)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), **emulation_env(platform)}
    venv = scratch / "venv"
    subprocess.run([str(unpacked / "python" / "bin" / "python3"), "-m", "venv", str(venv)], check=True, env=env,
                   timeout=600)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
                    str(wheels), *CONSUMER_REQUIREMENTS], check=True, env=env, timeout=900)
    return venv / "bin" / "python", {**env, "PYTHONPATH": str(ROOT / "tools")}


def install_with(python: Path, env: dict[str, str], request: str, variant: str, index_url: str, public_key: str,
                 versions: Path) -> subprocess.CompletedProcess:
    """`relocpy install` run by `python` (an emulated venv's)."""
    return subprocess.run([str(python), "-m", "relocpy", "install", request, "--variant", variant,
                           "--index", index_url, "--trusted-key", public_key, "--install-dir", str(versions)],
                          capture_output=True, text=True, env=env, timeout=900)


def installed_platform(versions: Path) -> str:
    """The platform tag of the one artifact installed in versions."""
    [receipt] = versions.glob(".store/*/RELOCPY.json")
    return ArtifactKey.model_validate(json.loads(receipt.read_text())["key"]).platform_tag
