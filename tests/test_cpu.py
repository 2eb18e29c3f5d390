"""CPU micro-architecture levels: the host's, the installer's choice, the uv export."""

from __future__ import annotations

import pytest

from relocpy.cpu import host_levels, split_level
from relocpy.errors import InstallError
from relocpy.install import Request, choose, requested_variants
from relocpy.models import Platform
from relocpy.uvexport import export
from test_uvexport import entry, index_of

# Real /proc/cpuinfo flags lines (trimmed): a Haswell-era server, and a QEMU
# default CPU with SSE4.2 but no AVX.
HASWELL = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht "
           "syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid tsc_known_freq pni "
           "pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor "
           "lahf_lm abm invpcid_single fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid xsaveopt arat md_clear")
QEMU_V2 = "fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pse36 clflush mmx fxsr sse sse2 syscall nx lm pni " \
          "ssse3 cx16 sse4_1 sse4_2 popcnt hypervisor lahf_lm"
HOST = [Platform.from_tag("manylinux_2_36_x86_64")]


@pytest.mark.parametrize(("flags", "levels"), [
    (HASWELL, ["x86_64_v2", "x86_64_v3"]),
    (QEMU_V2, ["x86_64_v2"]),
    (HASWELL.replace(" avx2", ""), ["x86_64_v2"]),  # v3 needs every flag
    ("fpu sse sse2", []),
])
def test_host_levels_come_from_the_cpus_own_flags(tmp_path, flags, levels):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert host_levels(cpuinfo) == levels


def test_no_cpuinfo_means_the_baseline(tmp_path):
    assert host_levels(tmp_path / "missing") == []


def test_split_level():
    assert split_level("pgo+lto+x86_64_v3") == ("pgo+lto", "x86_64_v3")
    assert split_level("x86_64_v3") == ("", "x86_64_v3")
    assert split_level("freethreaded+pgo+lto") == ("freethreaded+pgo+lto", None)


def levels_index():
    return index_of(
        entry(), entry(options="pgo+lto+x86_64_v3", variant="pgo+lto+x86_64_v3"),
        entry(options="lto", variant="lto"),
    )


def test_the_installer_picks_the_highest_level_the_cpu_runs():
    index = levels_index()
    default = Request.parse("3.13")
    assert choose(index, default, None, HOST, cpu_levels=["x86_64_v2", "x86_64_v3"]).variant == "pgo+lto+x86_64_v3"
    assert choose(index, default, None, HOST, cpu_levels=["x86_64_v2"]).variant is None
    assert choose(index, default, None, HOST, cpu_levels=[]).variant is None
    # A level build serves the unnamed default only: asking for lto gets lto.
    assert choose(index, Request.parse("3.13", "lto"), None, HOST, cpu_levels=["x86_64_v3"]).variant == "lto"
    # Named outright, a level the CPU lacks is refused, naming what exists.
    with pytest.raises(InstallError, match="no cpython 3.13 \\(pgo\\+lto\\+x86_64_v3\\) artifact fits this host"):
        choose(index, Request.parse("3.13", "pgo+lto+x86_64_v3"), None, HOST, cpu_levels=["x86_64_v2"])


def test_a_level_build_of_the_default_is_requested_as_the_default():
    serves = requested_variants(levels_index())
    assert sorted(serves.values(), key=str) == [None, None, "lto"]


def test_the_uv_export_marks_the_level_as_uv_does():
    exported = export(levels_index(), "http://127.0.0.1:1/dl/index.json")
    assert set(exported) == {"cpython-3.13.15-linux-x86_64-gnu", "cpython-3.13.15-linux-x86_64_v3-gnu"}
    assert exported["cpython-3.13.15-linux-x86_64_v3-gnu"]["arch"] == {"family": "x86_64", "variant": "v3"}
    baseline = exported["cpython-3.13.15-linux-x86_64-gnu"]
    # Of the default and lto, uv gets the target's default (the unnamed build).
    assert baseline["arch"] == {"family": "x86_64", "variant": None} and "-lto-" not in baseline["url"]


def test_a_level_of_another_arch_is_refused_naming_what_the_target_builds():
    from relocpy.errors import UnknownNameError
    from relocpy.plan import resolve_plan
    from relocpy.recipes import cells, load_recipes

    recipes = load_recipes()
    arm = recipes.targets["aarch64-unknown-linux-gnu"]
    assert arm.buildable
    with pytest.raises(UnknownNameError) as err:
        resolve_plan(recipes, "3.13.15", arm.triple, "x86_64_v3")
    assert "x86_64_v3 is a CPU level of x86_64, not aarch64 (it builds: noopt, lto, debug, freethreaded" in str(err.value)
    assert not [c for c in cells(recipes) if c.target == arm.triple and "x86_64_v3" in c.variant]
