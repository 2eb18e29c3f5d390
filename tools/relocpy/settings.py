"""Every setting that comes from flags or the environment, resolved once.

The rest of the code receives a `FetchSettings` (or another settings model)
and never reads the environment itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "relocpy"


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
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
