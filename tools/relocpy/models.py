"""Typed data passed between pipeline stages.

Recipes (what the farm can build), the resolved `BuildPlan` (what one build
does) and `ArtifactKey` (the one identity of a built artifact that build,
index, publish and install all speak in) live here.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Any, Literal

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from relocpy.errors import UsageError

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
DOTTED_VERSION_RE = re.compile(r"^\d+(\.\d+)*$")


def version_tuple(text: str) -> tuple[int, ...]:
    """'2.2.5' -> (2, 2, 5): symbol and libc versions compare part by part."""
    return tuple(int(part) for part in text.split("."))


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def canonical_version(value: str, noun: str = "a version number") -> str:
    """A version spelled one way only: "3.13.015" or " 3.13.15" would name
    3.13.15 a second time, under a key nothing else matches."""
    try:
        canonical = str(Version(value))
    except InvalidVersion:
        raise ValueError(f"{value!r} is not {noun}") from None
    if canonical != value:
        raise ValueError(f"{value!r}: write it as {canonical!r}")
    return value


def plain_name(value: str) -> str:
    """A file name in a directory the recipes name: no way out of it."""
    if not value or "/" in value or "\\" in value or value in (".", ".."):
        raise ValueError(f"{value!r} must be a plain file name")
    return value


def path_under(value: str, directory: str) -> str:
    """A relative path that stays under directory, by its spelling (the file
    it reaches, links followed, is checked where it is read)."""
    if "\\" in value or any(part in ("", ".", "..") for part in value.split("/")):  # "", "/x", "a//b", "../x"
        raise ValueError(f"{value!r} is not a plain path under {directory}/, e.g. cpython/3.13/0001-fix.patch")
    return value


# --- recipes ----------------------------------------------------------------


class SourceFile(Model):
    """One pinned file. `origin` says whether it is the upstream release."""

    file: str
    sha256: str
    urls: list[str] = []
    origin: Literal["upstream", "repack"] = "upstream"
    note: str = ""

    @field_validator("sha256")
    @classmethod
    def _is_sha256(cls, value: str) -> str:
        if not SHA256_RE.match(value):
            raise ValueError("must be 64 lowercase hex digits")
        return value

    @field_validator("file")
    @classmethod
    def _is_plain_name(cls, value: str) -> str:
        return plain_name(value)


class Dependency(Model):
    name: str
    version: str
    license: str
    template: str  # build/deps/<template>.sh.j2
    sources: list[SourceFile] = Field(min_length=1)
    depends: list[str] = []
    exports: list[str] = []

    @field_validator("template")
    @classmethod
    def _template_is_a_name(cls, value: str) -> str:
        return plain_name(value)


class Target(Model):
    triple: str
    os: Literal["linux", "macos", "windows"]
    arch: Literal["x86_64", "aarch64"]
    libc: Literal["glibc", "musl", "msvcrt", "none"]
    floor: str
    runner: Literal["docker", "native"]
    image: str = ""  # the base image Docker builds start from
    image_suite: str = ""  # the Debian suite `relocpy image bootstrap` makes that image from
    default_variant: str | None = None  # None: variants.toml's default; artifact names leave it out
    toolchain: Literal["gcc", "clang", "zig", "msvc"]
    cflags: list[str] = []
    ldflags: list[str] = []
    dependencies: list[str] = []
    buildable: bool
    reason: str = ""
    # A cross-built target: the triple of the target whose machines build it
    # (and whose interpreter the build runs); "" when it builds on its own arch.
    build_on: str = ""

    @property
    def cross(self) -> bool:
        return bool(self.build_on)


class BuildCell(Model):
    """One target x python x variant, and whether the farm can build it (why not)."""

    target: str
    python: str
    variant: str
    buildable: bool
    reason: str = ""


class VariantOption(Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # artifact names carry options joined by '+'
    configure: list[str] = []
    description: str = ""
    conflicts: list[str] = []
    min_python: str | None = None

    @field_validator("min_python")
    @classmethod
    def _is_a_version(cls, value: str | None) -> str | None:
        return None if value is None else canonical_version(value)


class VariantsFile(Model):
    """variants.toml: the options, and which variants the farm names and publishes."""

    default: str
    published: list[str] = Field(min_length=1)
    options: dict[str, Any] = Field(min_length=1)  # each a table, validated as a VariantOption


class PythonRecipe(Model):
    version: str
    sources: list[SourceFile] = Field(min_length=1)
    configure: list[str] = []
    configure_env: dict[str, str] = {}
    patches: list[str] = []  # paths under patches/, applied in order
    excluded_modules: dict[str, str] = {}
    known_test_failures: dict[str, str] = {}  # CPython test name -> why it cannot pass here

    @field_validator("version")
    @classmethod
    def _version_is_canonical(cls, value: str) -> str:
        return canonical_version(value)

    @field_validator("patches")
    @classmethod
    def _patches_stay_in_patches(cls, value: list[str]) -> list[str]:
        for patch in value:
            path_under(patch, "patches")
        if len(set(value)) != len(value):
            raise ValueError("a patch is listed twice")
        return value

    @property
    def minor(self) -> str:
        v = Version(self.version)
        return f"{v.major}.{v.minor}"


class RunSpec(Model):
    """How validation runs a target's interpreter: on this host, through the
    libc's loader installed on this host, with qemu-user over a foreign root,
    or in a container image."""

    how: Literal["host", "loader", "emulator", "container"]
    emulator: str = ""  # how = "emulator": the qemu-user program, e.g. qemu-aarch64
    root: str = ""  # how = "emulator": the foreign root holding the target's loader and libc
    packages: list[str] = []  # how = "emulator" or "loader": the Debian packages installing the root or loader
    image: str = ""  # how = "container": the image to run it in


class PlatformPolicy(Model):
    """What an ELF file for one libc, arch and floor may need from the system
    it runs on (recipes/policies.toml), as auditwheel keeps its policies."""

    name: str  # the tag the policy grants at its floor, e.g. manylinux_2_17_x86_64
    family: Literal["manylinux", "musllinux"]
    libc: Literal["glibc", "musl"]
    arch: Literal["x86_64", "aarch64"]
    floor: str  # the libc version promised: manylinux_2_17 needs glibc 2.17 or newer
    libc_versions: str = ""  # the libc's own symbol-version namespace (GLIBC): its highest decides the tag
    loader: str  # PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2
    libraries: list[str]  # DT_NEEDED allowed besides the loader and the tree's own libpython
    symbol_versions: dict[str, str] = {}  # any other namespace allowed -> the highest version allowed
    run: RunSpec
    # CPython tests that fail on this libc whatever the build (its behaviour,
    # not ours), with why; added to the python recipe's own.
    known_test_failures: dict[str, str] = {}

    @field_validator("floor")
    @classmethod
    def _floor_is_a_version(cls, value: str) -> str:
        if not DOTTED_VERSION_RE.match(value):
            raise ValueError("must be a version like 2.17")
        return value

    @field_validator("symbol_versions")
    @classmethod
    def _ceilings_are_versions(cls, value: dict[str, str]) -> dict[str, str]:
        for namespace, ceiling in value.items():
            if not DOTTED_VERSION_RE.match(ceiling):
                raise ValueError(f"{namespace}: {ceiling!r} is not a version like 3.4.19")
        return value

    @model_validator(mode="after")
    def _name_is_the_tag_at_the_floor(self) -> PlatformPolicy:
        # One family per libc: then one name per libc, arch and floor.
        if (self.family == "manylinux") != (self.libc == "glibc"):
            raise ValueError(f"family: {self.family} is not a family of {self.libc} tags")
        if self.name != self.tag(self.floor):
            raise ValueError(f"name: a {self.family} policy at floor {self.floor} is named {self.tag(self.floor)}")
        return self

    @property
    def allowed_libraries(self) -> set[str]:
        return {*self.libraries, PurePosixPath(self.loader).name}

    def tag(self, libc_version: str) -> str:
        """PEP 600 / PEP 656: {family}_{major}_{minor}_{arch}."""
        major, minor = (version_tuple(libc_version) + (0,))[:2]
        return f"{self.family}_{major}_{minor}_{self.arch}"


class Recipes(Model):
    targets: dict[str, Target]
    policies: dict[str, PlatformPolicy]
    dependencies: dict[str, Dependency]
    pythons: dict[str, PythonRecipe]
    options: dict[str, VariantOption]
    default_variant: str
    published_variants: list[str]


# --- plans --------------------------------------------------------------------


class PatchRef(Model):
    path: str  # relative to patches/
    sha256: str


class DependencyStep(Model):
    """One dependency to build, with everything its cache key depends on."""

    dependency: Dependency
    template_sha256: str
    depends: list[str]


class Variant(Model):
    name: str
    options: list[str]
    configure: list[str]

    def has(self, option: str) -> bool:
        return option in self.options


class BuildPlan(Model):
    python: PythonRecipe
    target: Target
    variant: Variant
    artifact_variant: str | None  # the variant part of artifact names (None: the target's default)
    patches: list[PatchRef]
    dependencies: list[DependencyStep]  # in build order
    configure_flags: list[str]
    cpython_template_sha256: str
    excluded_modules: dict[str, str]
    platform: PlatformPolicy | None = None  # what validation holds the files to (Linux targets)
    # A cross build's interpreter for the build machine (the build_on target's
    # noopt build of the same version), which CPython's cross build runs.
    build_python: BuildPlan | None = None

    @property
    def content_hash(self) -> str:
        """Stable hash of everything that decides the build's output (what
        validation holds the output to does not: the platform policy and which
        CPython tests it ignores). The build python is not in it: the steps
        given its interpreter are keyed by that step's key."""
        exclude = {"python": {"known_test_failures"}, "platform": True, "build_python": True}
        data = self.model_dump(mode="json", exclude=exclude)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def cpu_level(self) -> str | None:
        """The CPU micro-architecture level the variant builds for (cpu.py), if any."""
        from relocpy.cpu import split_level  # cpu.py imports nothing of relocpy

        return split_level(self.variant.name)[1]

    def all_sources(self) -> list[tuple[str, list[SourceFile]]]:
        """(component name, candidate files) for every source the plan needs."""
        named = [("cpython", self.python.sources)]
        named += [(s.dependency.name, s.dependency.sources) for s in self.dependencies]
        if self.build_python is not None:
            own = {component for component, _ in named}
            named += [n for n in self.build_python.all_sources() if n[0] not in own]
        return named


# --- artifacts ----------------------------------------------------------------

Flavor = Literal["install_only", "install_only_stripped", "full"]
FLAVOR_EXTENSIONS: dict[str, str] = {
    "install_only": "tar.gz",
    "install_only_stripped": "tar.gz",
    "full": "tar.zst",
}
BUILD_TAG_PATTERN = r"[A-Za-z0-9._]+"


def check_build_tag(tag: str) -> str:
    """A build tag is part of every artifact name: refuse one the names cannot carry."""
    if not re.fullmatch(BUILD_TAG_PATTERN, tag):
        raise UsageError(f"bad build tag '{tag}': use letters, digits, '.' and '_' only, e.g. 20261124")
    return tag


ARTIFACT_NAME_RE = re.compile(
    r"^(?P<implementation>cpython)-(?P<version>[0-9][^+]*)\+(?P<build_tag>" + BUILD_TAG_PATTERN + r")-"
    r"(?P<platform_tag>(?:manylinux|musllinux|macosx|win)[A-Za-z0-9_]*?)"
    r"(?:-(?P<variant>[a-z][a-z0-9_+]*))?-(?P<flavor>install_only_stripped|install_only|full)"
    r"\.(?P<ext>tar\.gz|tar\.zst)$"
)


TAG_ARCHES = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64", "amd64": "x86_64", "i686": "i686"}
PLATFORM_TAG_RE = re.compile(
    r"^(?:(?P<family>manylinux|musllinux|macosx)_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>[a-z0-9_]+)"
    r"|win_(?P<win_arch>[a-z0-9_]+))$"
)
FAMILY = {"manylinux": ("linux", "glibc"), "musllinux": ("linux", "musl"), "macosx": ("macos", "none")}


class Platform(Model):
    """Where an artifact runs: what the index carries and install and the uv
    export compare. `floor` is the libc version (Linux) or OS version (macOS)
    it needs at least. The wheel platform tag is its spelling in names."""

    os: Literal["linux", "macos", "windows"]
    arch: str
    libc: Literal["glibc", "musl", "none"]
    floor: str = ""

    @classmethod
    def from_tag(cls, tag: str) -> Platform:
        """The one reader of platform tags (PEP 600, PEP 656, macOS and Windows wheels)."""
        match = PLATFORM_TAG_RE.match(tag)
        if not match:
            raise ValueError(f"not a platform tag relocpy builds for: {tag!r}")
        if match["win_arch"]:
            return cls(os="windows", arch=TAG_ARCHES.get(match["win_arch"], match["win_arch"]), libc="none")
        os_name, libc = FAMILY[match["family"]]
        arch = TAG_ARCHES.get(match["arch"], match["arch"])
        return cls(os=os_name, arch=arch, libc=libc, floor=f"{match['major']}.{match['minor']}")

    @property
    def tag(self) -> str:
        if self.os == "windows":
            return f"win_{'amd64' if self.arch == 'x86_64' else self.arch}"
        family = {"glibc": "manylinux", "musl": "musllinux"}.get(self.libc, "macosx")
        arch = "arm64" if family == "macosx" and self.arch == "aarch64" else self.arch
        return f"{family}_{self.floor.replace('.', '_')}_{arch}"

    def runs_on(self, host: Platform) -> bool:
        """Same OS, arch and libc, and the host's version at least the floor."""
        if (self.os, self.arch, self.libc) != (host.os, host.arch, host.libc):
            return False
        return not self.floor or version_tuple(self.floor) <= version_tuple(host.floor)


class ArtifactKey(Model):
    """The identity of one artifact: what build, index, install and the uv
    export agree on, compared field by field (the file name only spells it)."""

    implementation: Literal["cpython"] = "cpython"
    version: str
    build_tag: str
    platform: Platform
    variant: str | None = None  # None: the unnamed (default) variant
    flavor: Flavor

    @field_validator("version")
    @classmethod
    def _a_release_version(cls, value: str) -> str:
        # Every reader sorts and matches by it: one entry that is not a version
        # would stop an install of any version. Refused where the key is made.
        return canonical_version(value, "a Python version")

    @model_validator(mode="before")
    @classmethod
    def _platform_from_tag(cls, data):
        # Names and older callers give the tag; the key keeps its parts.
        if isinstance(data, dict) and "platform_tag" in data:
            data = {**data}
            tag = data.pop("platform_tag")
            data["platform"] = Platform.from_tag(tag)
        return data

    @property
    def platform_tag(self) -> str:
        return self.platform.tag

    @property
    def filename(self) -> str:
        variant = f"-{self.variant}" if self.variant else ""
        return (
            f"{self.implementation}-{self.version}+{self.build_tag}-{self.platform_tag}"
            f"{variant}-{self.flavor}.{FLAVOR_EXTENSIONS[self.flavor]}"
        )

    @classmethod
    def parse(cls, filename: str) -> ArtifactKey:
        match = ARTIFACT_NAME_RE.match(filename)
        if not match:
            raise ValueError(f"not an artifact name: {filename}")
        fields = match.groupdict()
        fields.pop("ext")
        return cls(**fields)


METADATA_SCHEMA_VERSION = 2  # 2: the validation policy passed and the facts measured


class Component(Model):
    """One bundled component, for the artifact's SBOM."""

    name: str
    version: str
    license: str
    source_file: str
    sha256: str


class ValidationPolicy(Model):
    """Everything validation holds one build's files and interpreter to, built
    once (validate.validation_policy) and recorded in each artifact's
    metadata, so that `relocpy validate` applies exactly it again."""

    platform: PlatformPolicy
    enforce_floor: bool  # False: needing more than the floor is a warning (gcc links the build host's glibc)
    excluded_modules: dict[str, str]  # module -> why the recipe leaves it out
    export_prefixes: list[str]  # symbol prefixes of the bundled libraries, which no file may export
    known_test_failures: dict[str, str] = {}
    # Directories of the build machine no file may name: not recorded, they
    # mean nothing on another machine (and would make metadata differ by machine).
    build_paths: list[str] = Field(default=[], exclude=True)


class MeasuredFacts(Model):
    """What the validated interpreter reported about itself (checks/smoke.py, checks/tags.py)."""

    openssl_version: str | None  # ssl.OPENSSL_VERSION
    sqlite_version: str | None  # sqlite3.sqlite_version
    ext_suffix: str  # sysconfig's EXT_SUFFIX, e.g. .cpython-313-x86_64-linux-gnu.so
    extension_modules: list[str]  # built by configure, and imported


class ArtifactMetadata(Model):
    """Written beside each archive as `<archive name>.json`."""

    schema_version: Literal[2] = METADATA_SCHEMA_VERSION
    name: str  # the archive's file name (ArtifactKey.filename)
    key: ArtifactKey
    python_version: str
    python_tag: str  # e.g. cp313
    abi_tag: str  # e.g. cp313, cp313t, cp313d
    abiflags: str
    target_triple: str
    platform_tag: str  # computed from the built files, e.g. manylinux_2_17_x86_64
    glibc_max: str | None = None  # highest GLIBC_x.y symbol version needed
    wheel_tags: list[str]  # what the interpreter accepts, best first (packaging.tags)
    variant: str  # canonical variant name, always set (e.g. pgo+lto)
    configure_flags: list[str]
    components: list[Component]
    validation: ValidationPolicy  # the policy the archive passed
    measured: MeasuredFacts
    source_date_epoch: int
    plan_hash: str
    sha256: str
    size: int
