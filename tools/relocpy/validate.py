"""Validation rules for an interpreter tree: ELF rules, no build-machine paths,
and a real run of every bundled library from a moved copy at an awkward path.
artifacts.validate_archive applies them to each archive as it ships.

The rules come from one ValidationPolicy, built here from the plan (its
target's platform policy, modules, exports, tests, toolchain) and recorded in
each artifact's metadata. Any violation raises ValidationFailed listing them;
nothing reaches --dist.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel

from relocpy.cpython import INSTALL_PREFIX
from relocpy.emulation import emulation_env, extension_compiler
from relocpy.errors import UsageError, ValidationFailed
from relocpy.extras import Lazy
from relocpy.models import BuildPlan, MeasuredFacts, PlatformPolicy, ValidationPolicy, version_tuple
from relocpy.progress import info, warn
from relocpy.tlsprobe import LoopbackTLSServer, build_wheel
from relocpy.toolchain import links_against_floor

elf = Lazy("build", "relocpy.elf")  # pyelftools

CHECKS = Path(__file__).parent / "checks"
# Test extension modules, dropped from the install_only flavors.
TEST_MODULES = [
    "_ctypes_test", "_testbuffer", "_testcapi", "_testclinic", "_testclinic_limited",
    "_testexternalinspection", "_testimportmultiple", "_testinternalcapi",
    "_testlimitedcapi", "_testmultiphase", "_testsinglephase", "xxlimited",
    "xxlimited_35", "xxsubtype", "_xxtestfuzz", "_xxsubinterpreters", "_xxinterpchannels",
]
# CPython's own tests for the bundled libraries (from the full flavor).
REGRESSION_TESTS = [
    "test_zlib", "test_bz2", "test_lzma", "test_sqlite3", "test_hashlib", "test_ssl",
    "test_ctypes", "test_uuid", "test_readline", "test_pyexpat", "test_xml_etree_c",
    "test_decimal", "test_venv", "test_sysconfig",
]
# Strings naming the build machine that a relocated tree must not contain.
ALWAYS_FORBIDDEN = [INSTALL_PREFIX]


def validation_policy(plan: BuildPlan, build_paths: list[str]) -> ValidationPolicy:
    """The one policy a build's files and interpreter are held to: its target's
    platform policy, and what the plan says about modules, exported symbols,
    CPython's tests and the toolchain (`build_paths`: this machine's dirs)."""
    if plan.platform is None:
        raise UsageError(f"{plan.target.triple}: no platform policy: only Linux targets can be validated")
    return ValidationPolicy(
        platform=plan.platform,
        enforce_floor=links_against_floor(plan.target),
        excluded_modules=plan.excluded_modules,
        export_prefixes=[p for s in plan.dependencies for p in s.dependency.exports],
        known_test_failures=plan.python.known_test_failures,
        build_paths=build_paths,
    )


class ValidationReport(BaseModel):
    platform_tag: str
    glibc_max: str | None  # the highest version of the libc's symbol-version namespace needed
    abiflags: str
    python_tag: str
    abi_tag: str
    wheel_tags: list[str]
    checks: list[str]
    facts: dict
    measured: MeasuredFacts


def check_files(tree: Path, policy: ValidationPolicy) -> elf.ElfSummary:
    """The checks that read the files without running them: ELF rules, paths of
    the build machine, the floor. Raises ValidationFailed."""
    summary = elf.check_tree(tree, policy.platform, policy.export_prefixes)
    problems = list(summary.problems)
    problems += find_build_paths(tree, [*ALWAYS_FORBIDDEN, *policy.build_paths])
    problems += floor_problems(summary, policy.platform, policy.enforce_floor)
    if problems:
        raise ValidationFailed(_summarise(problems))
    return summary


def tag_of(summary: elf.ElfSummary, policy: ValidationPolicy) -> str:
    return elf.platform_tag(policy.platform, summary.libc_max)


def floor_problems(summary: elf.ElfSummary, platform: PlatformPolicy, enforce: bool) -> list[str]:
    """Above the floor is a failure when the toolchain links against the floor's
    glibc (zig), and only a warning when it links against the build host's."""
    floor, namespace = platform.floor, platform.libc_versions
    if not (namespace and summary.libc_max and version_tuple(summary.libc_max) > version_tuple(floor)):
        return []
    worst = sorted(name for name, v in summary.libc_by_file.items() if version_tuple(v) > version_tuple(floor))
    message = (f"{len(worst)} ELF files need more than {namespace}_{floor} "
               f"(up to {namespace}_{summary.libc_max}), e.g. {worst[0]}")
    if enforce:
        return [message]
    warn(message)
    return []


def _summarise(problems: list[str]) -> str:
    head = problems[0] if len(problems) == 1 else f"{len(problems)} problems: " + "; ".join(problems[:8])
    return "validation failed: " + head + (" …" if len(problems) > 8 else "")


# --- build-machine paths ---------------------------------------------------------


def find_build_paths(tree: Path, forbidden: list[str]) -> list[str]:
    """Files, binaries included, that name a directory of the build machine:
    in a binary such a path is a place the program may read from, or at best
    a difference between two builds of the same inputs."""
    needles = [f.encode() for f in forbidden if f]
    problems = []
    for path in sorted(tree.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        for needle in needles:
            if needle in data:
                problems.append(f"{path.relative_to(tree.parent)} names the build path {needle.decode()}")
                break
    return problems


# --- runtime -------------------------------------------------------------------------


def run_runtime_checks(prefix: Path, scratch: Path, policy: ValidationPolicy, regression_tests: bool) -> dict:
    """Run the interpreter at `prefix` (a tree already unpacked and moved), with
    `scratch` for venvs and wheels; CPython's tests only if regression_tests.
    The caller has checked that it can run here (require_runnable)."""
    link = scratch / "python3-link"
    link.symlink_to(prefix / "bin" / "python3")
    checker = _Checker(scratch, link, prefix, policy.excluded_modules, policy.platform)
    result = checker.smoke()
    checker.venv_and_wheel()
    checker.c_extension()
    checker.config_scripts()
    if regression_tests:
        emulated = EMULATION_TEST_FAILURES if emulation_env(policy.platform) else {}
        checker.regression_tests({**policy.known_test_failures, **policy.platform.known_test_failures, **emulated})
    return result


# CPython tests that cannot pass under qemu-user, whatever the build: they
# hold the emulation's set-up, not the interpreter, to account.
EMULATION_TEST_FAILURES = {
    "test_null_dlsym": "builds its test library with this host's cc, for the host's architecture",
    "test_zippath_from_non_installed_posix": "runs a copied interpreter in an environment of its own, "
                                             "without QEMU_LD_PREFIX",
}


class _Checker:
    def __init__(self, tmp: Path, python: Path, prefix: Path, excluded: dict[str, str], platform: PlatformPolicy):
        self.tmp, self.python, self.prefix = tmp, python, prefix
        self.env = {
            "PATH": "/usr/bin:/bin",
            "LC_ALL": "C.UTF-8",
            "HOME": str(tmp),
            "RELOCPY_EXCLUDED_MODULES": json.dumps(sorted(excluded)),
            "RELOCPY_ABSENT_OK": json.dumps(TEST_MODULES),
            **emulation_env(platform),
        }
        compiler = extension_compiler(platform)
        if compiler:
            self.env["RELOCPY_CC"] = shlex.join(compiler)
            self.env["ZIG_GLOBAL_CACHE_DIR"] = self.env["ZIG_LOCAL_CACHE_DIR"] = str(tmp / "zig-cache")

    def run(self, name: str, argv: list, timeout: int = 600, **kwargs) -> str:
        try:
            result = subprocess.run(
                [str(a) for a in argv], capture_output=True, text=True, errors="surrogateescape",
                env=self.env, timeout=timeout, **kwargs
            )
        except subprocess.TimeoutExpired:
            raise ValidationFailed(f"validation failed: {name}: timed out after {timeout}s") from None
        if result.returncode != 0:
            output = (result.stdout + "\n" + result.stderr).strip().splitlines()
            # regrtest names each failing test file on a line of its own
            detail = [line for line in output if re.search(r"\btest_\w+ failed", line)][-5:] or output[-3:]
            raise ValidationFailed(f"validation failed: {name}: " + " | ".join(detail))
        return result.stdout

    def smoke(self) -> dict:
        with LoopbackTLSServer(self.tmp) as server:
            argv = [self.python, CHECKS / "smoke.py", server.info_file]
            if server.can_install_ca():
                argv = ["unshare", "--mount", "--", CHECKS / "with_system_ca.sh", server.bundle, *argv]
            else:
                warn("cannot use a private mount namespace here: the TLS check trusts the system store only")
                argv = argv[:2]
            out = self.run("smoke checks", argv)
        report = json.loads(out.strip().splitlines()[-1])
        if report["failed"]:
            raise ValidationFailed(
                "validation failed: " + "; ".join(f"{k}: {v}" for k, v in report["failed"].items())
            )
        info(f"    runtime checks passed from '{self.prefix}': {', '.join(report['ok'])}")
        return self._interpreter_facts(report)

    def _interpreter_facts(self, report: dict) -> dict:
        out = self.run("wheel tags", [self.python, CHECKS / "tags.py"])
        tags = json.loads(out)
        facts = report["facts"]
        measured = MeasuredFacts(
            openssl_version=facts.get("ssl", {}).get("openssl"),
            sqlite_version=facts.get("sqlite3"),
            ext_suffix=tags.pop("ext_suffix"),
            extension_modules=facts.get("extension_modules", []),
        )
        return {**tags, "checks": report["ok"], "facts": facts, "measured": measured}

    def venv_and_wheel(self) -> None:
        venv = self.tmp / "venv with space"
        self.run("python -m venv", [self.python, "-m", "venv", venv])
        wheels = self.tmp / "wheels"
        build_wheel(wheels)
        self.run("pip install (offline)", [venv / "bin" / "python", "-m", "pip", "install", "--no-index",
                                           "--find-links", wheels, "relocpy-probe-wheel"])
        self.run("import installed wheel", [venv / "bin" / "python", "-c", "import relocpy_probe_wheel as m; assert m.VALUE == 7"])
        self.venv = venv

    def c_extension(self) -> None:
        out_dir = self.tmp / "ext"
        out_dir.mkdir()
        self.run("build C extension", [self.venv / "bin" / "python", CHECKS / "build_extension.py", CHECKS / "probe.c", out_dir])

    def config_scripts(self) -> None:
        include = self.prefix / "include"
        config = next(p for p in (self.prefix / "bin").glob("python3*-config"))
        out = self.run("python3-config", [config, "--includes"])
        assert_under(out, include, "python3-config --includes")
        if shutil.which("pkg-config"):
            self.env["PKG_CONFIG_PATH"] = str(self.prefix / "lib" / "pkgconfig")
            out = self.run("pkg-config", ["pkg-config", "--cflags", "python3"])
            # pkg-config backslash-escapes each byte of a path that needs it.
            unescaped = re.sub(rb"\\(.)", rb"\1", out.encode("utf-8", "surrogateescape"))
            flag = unescaped.decode("utf-8", "replace").strip()
            if not (flag.startswith("-I") and os.path.realpath(flag[2:]).startswith(os.path.realpath(include))):
                raise ValidationFailed(f"validation failed: pkg-config --cflags python3 printed {flag!r}, not {include}")

    def regression_tests(self, known_failures: dict[str, str]) -> None:
        test_dirs = list((self.prefix / "lib").glob("python3.*/test"))
        if not test_dirs:
            raise ValidationFailed("validation failed: CPython's tests were asked for, but the tree has no lib/python3.*/test")
        present = [t for t in REGRESSION_TESTS if any((d / t).exists() or (d / f"{t}.py").exists() for d in test_dirs)]
        absent = sorted(set(REGRESSION_TESTS) - set(present))
        # A whole test file named as a known failure is not run; any other name
        # is a test case regrtest ignores.
        present = [t for t in present if t not in known_failures]
        info(f"    running CPython's tests: {' '.join(present)}" + (f" (not installed: {', '.join(absent)})" if absent else ""))
        for name, reason in known_failures.items():
            info(f"    ignoring {name}: {reason}")
        ignored = [arg for name in known_failures if name not in REGRESSION_TESTS for arg in ("--ignore", name)]
        # Run through the installed name: one venv test assumes the
        # interpreter is not reached through a link with another name. -w
        # re-runs a failed test once: TLS tests flake on a loaded machine.
        self.run("CPython regression tests",
                 [self.prefix / "bin" / "python3", "-m", "test", "-j2", "-w", "--timeout", "600", *ignored, *present],
                 timeout=1800)


def assert_under(output: str, directory: Path, what: str) -> None:
    # The output is unquoted (paths may hold spaces): look for the directory itself.
    if f"-I{directory}" not in output and f"-I{os.path.realpath(directory)}" not in output:
        raise ValidationFailed(f"validation failed: {what} printed {output.strip()!r}, not paths under {directory}")
