"""Running a target's programs on this host: natively, through another libc's
loader installed here, or under qemu-user (registered with binfmt_misc) over
a foreign root. The target's platform policy says which (recipes/policies.toml:
`run`). A build checks this before its first step, since validation will run
the interpreter; `relocpy ci emulation` installs and registers what is missing
on a Debian or Ubuntu host (a CI runner, a release manager's machine).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from platform import machine

from relocpy.errors import UsageError
from relocpy.models import PlatformPolicy
from relocpy.progress import info

# Where the kernel lists the interpreters it starts foreign binaries with.
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
# Debian's and Ubuntu's package of every qemu-user emulator, with one
# binfmt_misc entry per emulator under BINFMT_CONFIGS (flag F: the kernel
# keeps the emulator open, so it also works in containers and chroots).
EMULATOR_PACKAGE = "qemu-user-static"
BINFMT_CONFIGS = Path("/usr/lib/binfmt.d")


def host_arch() -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine().lower(), machine())


@dataclass(frozen=True)
class Missing:
    """What this host lacks to run a platform's programs: the one-line
    problem, and what `prepare_host` would do about it."""

    problem: str
    packages: tuple[str, ...] = ()  # Debian packages that supply it
    register: str = ""  # the emulator to register with binfmt_misc


def missing(platform: PlatformPolicy) -> Missing | None:
    """None when this host can run the platform's interpreter as its policy says."""
    how, here, run = platform.run.how, host_arch(), platform.run
    if how == "emulator" and here != platform.arch:
        entry = BINFMT_MISC / run.emulator
        if not (entry.is_file() and entry.read_text().startswith("enabled")):
            return Missing(f"{platform.name}: running {platform.arch} programs here needs {run.emulator} registered "
                           f"with binfmt_misc ({entry} is missing or disabled): apt-get install {EMULATOR_PACKAGE}, "
                           "then `relocpy ci emulation` registers it",
                           packages=(EMULATOR_PACKAGE, *_root_packages(platform)), register=run.emulator)
        if not _root_ready(platform):
            return Missing(f"{platform.name}: running {platform.arch} programs here needs a {platform.libc} root at "
                           f"{run.root or '(none named in policies.toml)'}: apt-get install {' '.join(run.packages)}",
                           packages=tuple(run.packages))
        return None
    if how not in ("host", "loader", "emulator"):
        return Missing(f"{platform.name}: its interpreter runs through {how} ({run.image}), "
                       "which runtime validation does not do yet")
    if here != platform.arch:
        return Missing(f"{platform.name}: cannot run {platform.arch} interpreters on this {here} host")
    if how == "loader" and not Path(platform.loader).exists():
        install = f" (apt-get install {' '.join(run.packages)})" if run.packages else ""
        return Missing(f"{platform.name}: running its interpreter needs {platform.loader} on this host{install}",
                       packages=tuple(run.packages))
    return None


def _root_ready(platform: PlatformPolicy) -> bool:
    return bool(platform.run.root) and (Path(platform.run.root) / platform.loader.lstrip("/")).exists()


def _root_packages(platform: PlatformPolicy) -> tuple[str, ...]:
    return () if _root_ready(platform) else tuple(platform.run.packages)


def require_runnable(platform: PlatformPolicy) -> None:
    """One line says what is missing; containers are not wired in yet."""
    if lack := missing(platform):
        raise UsageError(lack.problem)


def prepare_host(platforms: list[PlatformPolicy]) -> None:
    """Install and register what running these platforms' programs needs, then
    check again. Needs root (or sudo without a password, as CI runners have)."""
    lacking = [lack for lack in (missing(p) for p in platforms) if lack]
    unfixable = [lack.problem for lack in lacking if not lack.packages]
    if unfixable:
        raise UsageError(unfixable[0])
    packages = sorted({package for lack in lacking for package in lack.packages})
    if packages:
        _apt_install(packages)
    for emulator in sorted({lack.register for lack in lacking if lack.register}):
        _register(emulator)
    for platform in platforms:
        require_runnable(platform)
        info(f"{platform.name}: runs here ({_how(platform)})")


def _how(platform: PlatformPolicy) -> str:
    run = platform.run
    if run.how == "emulator" and host_arch() != platform.arch:
        return f"{run.emulator} over {run.root}"
    return {"loader": f"through {platform.loader}"}.get(run.how, "natively")


def _as_root(argv: list[str]) -> list[str]:
    return argv if os.geteuid() == 0 else ["sudo", "-n", *argv]


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(_as_root(argv), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise UsageError(f"{what} failed: {last}")


def _apt_install(packages: list[str]) -> None:
    """apt-get, adding the foreign architectures that `name:arch` packages need."""
    have = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split()
    for arch in sorted({p.split(":", 1)[1] for p in packages if ":" in p} - set(have)):
        _run(["dpkg", "--add-architecture", arch], f"dpkg --add-architecture {arch}")
    info(f"installing {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], "apt-get update")
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
         f"apt-get install {' '.join(packages)}", env)


def _register(emulator: str) -> None:
    """Register the emulator's binfmt_misc entry from its package's file,
    mounting binfmt_misc first if this host has not."""
    config = BINFMT_CONFIGS / f"{emulator}.conf"
    if not config.is_file():
        raise UsageError(f"{config} is missing: is {EMULATOR_PACKAGE} installed?")
    if not (BINFMT_MISC / "register").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_MISC)], "mounting binfmt_misc")
    info(f"registering {emulator} with binfmt_misc")
    entry = BINFMT_MISC / emulator
    # A disabled entry is enabled by writing 1 to it; registering it again would fail (it exists).
    target, text = (entry, "1") if entry.exists() else (BINFMT_MISC / "register", config.read_text())
    done = subprocess.run(_as_root(["tee", str(target)]), input=text, capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError(f"registering {emulator} with binfmt_misc failed: {done.stderr.strip()}")


def emulation_env(platform: PlatformPolicy) -> dict[str, str]:
    """What an emulated interpreter's environment adds: qemu finds the
    target's loader and libraries under the foreign root."""
    if platform.run.how != "emulator" or host_arch() == platform.arch:
        return {}
    return {"QEMU_LD_PREFIX": platform.run.root}


def extension_compiler(platform: PlatformPolicy) -> list[str]:
    """The compiler the interpreter builds its test C extension with when this
    host's `cc` (what its sysconfig names) is not the target's: under
    emulation (another architecture) or through another libc's loader. zig,
    for the target and its floor. [] when `cc` will do."""
    if platform.run.how == "host" or (platform.run.how == "emulator" and not emulation_env(platform)):
        return []
    from relocpy.toolchain import zig_dir, zig_triple  # the [build] extra, as validation needs anyway

    return [str(zig_dir() / "zig"), "cc", "-target", zig_triple(platform.arch, platform.libc, platform.floor)]
