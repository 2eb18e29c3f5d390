"""Every setting that comes from flags or the environment, resolved once.

The rest of the code receives a `FetchSettings` (or another settings model)
and never reads the environment itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from relocpy.datafiles import read_toml
from relocpy.errors import RelocpyError


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "relocpy"


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "relocpy"


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "relocpy"


class FetchSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    cache_dir: Path
    mirrors: list[str] = []
    offline: bool = False
    parallel: int = 4
    timeout: float = 30.0  # seconds without a byte before a download counts as stalled
    retries: int = 3
    progress: bool = True

    @classmethod
    def resolve(
        cls,
        cache_dir: str | None = None,
        mirrors: list[str] | None = None,
        offline: bool = False,
        **extra,
    ) -> FetchSettings:
        env_mirrors = [m for m in os.environ.get("RELOCPY_MIRRORS", "").split(",") if m.strip()]
        return cls(
            cache_dir=Path(cache_dir or os.environ.get("RELOCPY_CACHE_DIR") or user_cache_dir()).absolute(),
            mirrors=[*(mirrors or []), *(m.strip() for m in env_mirrors)],
            offline=offline or os.environ.get("RELOCPY_OFFLINE", "") not in ("", "0"),
            **extra,
        )


class ConfigFile(BaseModel):
    """`config.toml` in the user config dir (or RELOCPY_CONFIG): the client's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index_url: str | None = None
    trusted_keys: list[str] = []
    install_dir: str | None = None

    @classmethod
    def load(cls) -> ConfigFile:
        path = Path(os.environ.get("RELOCPY_CONFIG") or user_config_dir() / "config.toml")
        if not os.path.lexists(path):
            return cls()
        data = read_toml(path)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RelocpyError(f"{path}: {where}: {first['msg']}") from None


class ClientSettings(BaseModel):
    """What install, list, run, uninstall and index verify need.

    Precedence: flag, then environment (RELOCPY_INDEX_URL, RELOCPY_TRUSTED_KEYS
    comma-separated, RELOCPY_INSTALL_DIR), then the config file, then defaults.
    """

    model_config = ConfigDict(frozen=True)

    index_url: str | None
    trusted_keys: list[str]
    install_dir: Path
    state_file: Path
    fetch: FetchSettings

    @classmethod
    def resolve(
        cls,
        index_url: str | None = None,
        trusted_keys: list[str] | None = None,
        install_dir: str | None = None,
        **fetch_extra,
    ) -> ClientSettings:
        config = ConfigFile.load()
        env_keys = [k.strip() for k in os.environ.get("RELOCPY_TRUSTED_KEYS", "").split(",") if k.strip()]
        install = install_dir or os.environ.get("RELOCPY_INSTALL_DIR") or config.install_dir
        return cls(
            index_url=index_url or os.environ.get("RELOCPY_INDEX_URL") or config.index_url,
            trusted_keys=list(trusted_keys or env_keys or config.trusted_keys),
            install_dir=Path(install).expanduser().absolute() if install else user_data_dir() / "versions",
            state_file=user_data_dir() / "state.json",
            fetch=FetchSettings.resolve(**_transfer_env(), **fetch_extra),
        )


def _transfer_env() -> dict:
    """RELOCPY_TIMEOUT (seconds without a byte) and RELOCPY_RETRIES, for slow or flaky links."""
    found = {}
    for name, field, kind in (("RELOCPY_TIMEOUT", "timeout", float), ("RELOCPY_RETRIES", "retries", int)):
        if os.environ.get(name):
            try:
                found[field] = kind(os.environ[name])
            except ValueError:
                raise RelocpyError(f"{name}={os.environ[name]!r} is not a number") from None
    return found
