"""Every setting that comes from flags or the environment, resolved once.

The rest of the code receives a `FetchSettings` (or another settings model)
and never reads the environment itself.
"""

from __future__ import annotations

import math
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
    retries: int = 3  # attempts after the first one
    deadline: float = 1800.0  # seconds one download may take, retries included
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
            **{**_transfer_env(), **extra},
        )


class ConfigFile(BaseModel):
    """`config.toml` in the user config dir (or RELOCPY_CONFIG): the client's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index_url: str | None = None
    trusted_keys: list[str] = []
    channel: str | None = None
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
    comma-separated, RELOCPY_CHANNEL, RELOCPY_INSTALL_DIR), then the config
    file, then defaults.
    """

    model_config = ConfigDict(frozen=True)

    index_url: str | None
    trusted_keys: list[str]
    channel: str  # the index must be of this channel (index.py)
    install_dir: Path
    state_file: Path
    fetch: FetchSettings
    lock_timeout: float = 300.0  # seconds to wait for another installer's lock on the versions dir

    @classmethod
    def resolve(
        cls,
        index_url: str | None = None,
        trusted_keys: list[str] | None = None,
        install_dir: str | None = None,
        channel: str | None = None,
        **fetch_extra,
    ) -> ClientSettings:
        from relocpy.index import DEFAULT_CHANNEL, channel_name  # the signed format owns the name's rules

        config = ConfigFile.load()
        env_keys = [k.strip() for k in os.environ.get("RELOCPY_TRUSTED_KEYS", "").split(",") if k.strip()]
        install = install_dir or os.environ.get("RELOCPY_INSTALL_DIR") or config.install_dir
        return cls(
            index_url=index_url or os.environ.get("RELOCPY_INDEX_URL") or config.index_url,
            trusted_keys=list(trusted_keys or env_keys or config.trusted_keys),
            channel=channel_name(channel or os.environ.get("RELOCPY_CHANNEL") or config.channel or DEFAULT_CHANNEL),
            install_dir=Path(install).expanduser().absolute() if install else user_data_dir() / "versions",
            state_file=user_data_dir() / "state.json",
            fetch=FetchSettings.resolve(**fetch_extra),
            **({"lock_timeout": env_seconds("RELOCPY_LOCK_TIMEOUT")} if os.environ.get("RELOCPY_LOCK_TIMEOUT") else {}),
        )


def _transfer_env() -> dict:
    """RELOCPY_TIMEOUT (seconds without a byte), RELOCPY_RETRIES (attempts after
    the first; 0: one attempt) and RELOCPY_DEADLINE (seconds for a whole
    download), for slow or flaky links."""
    found = {}
    for name, field in (("RELOCPY_TIMEOUT", "timeout"), ("RELOCPY_DEADLINE", "deadline")):
        if os.environ.get(name):
            found[field] = env_seconds(name)
    if os.environ.get("RELOCPY_RETRIES"):
        text = os.environ["RELOCPY_RETRIES"]
        if not text.strip().isdigit():
            raise RelocpyError(f"RELOCPY_RETRIES={text!r} is not a whole number of 0 or more")
        found["retries"] = int(text)
    return found


def env_seconds(name: str) -> float:
    """A positive, finite number of seconds from the environment, or one error line."""
    text = os.environ[name]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise RelocpyError(f"{name}={text!r} is not a positive number of seconds")
    return value
