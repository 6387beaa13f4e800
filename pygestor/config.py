"""Settings: where data lives and how Pygestor fetches, stores and serves it.

Resolution, later wins (as in fsspec's own config):

1. packaged defaults (``DEFAULTS`` below, documented key by key in ``confs/system.toml``);
2. a TOML config file: ``--config`` / ``PYGESTOR_CONFIG``, else ``./confs/system.toml`` if present;
3. the environment: ``PYGESTOR_DATA_DIR``, ``PYGESTOR_STORAGE_OPTIONS`` (JSON), and
   ``PYGESTOR_<KEY>`` for the scalar keys (e.g. ``PYGESTOR_MAX_WORKERS=8``);
4. explicit arguments (``Settings.load(data_dir=...)``, the CLI's ``--data-dir``).

A relative ``data_dir`` in a config file is relative to that file's folder, so a config works from
any working directory; elsewhere it is relative to the working directory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from pygestor.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("confs") / "system.toml"

PARTIAL_READS = ("warn", "error", "allow")
#: Keys whose values are never shown (``pygestor config``, the UI, errors, logs).
SECRET_KEY_PATTERN = re.compile(r"(secret|token|password|passwd|key|credential|auth)", re.I)
REDACTED = "***"

_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value: int | str, key: str = "size") -> int:
    """``128MB``, ``1 GiB``, ``4096`` -> bytes; a clear error otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a size like 128MB, got {value!r}")
    if isinstance(value, int):
        number, unit = value, ""
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
        if not match or match.group(2).upper() not in _SIZE_UNITS:
            raise ConfigError(f"{key}: expected a size like 128MB or 1GiB, got {value!r}")
        number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise ConfigError(f"{key}: must be positive, got {value!r}")
    return size


@dataclass(frozen=True)
class Settings:
    """Effective settings. Build with :meth:`Settings.load`; never mutate (use ``replace``).

    Storage:
        data_dir: the storage root, a local path or any fsspec URL (``s3://bucket/prefix``).
        storage_options: keyword arguments for the fsspec filesystem (``endpoint_url``, ``key``...).
    Partitions:
        partition_size: target bytes of source data per partition.
        row_group_size: rows per row group in written partitions (the loaders' unit of work).
        compression: parquet codec for written partitions.
    Downloads and network:
        max_workers: concurrent partition downloads.
        retries: attempts for a transient network error (1 = no retry).
        retry_backoff: first back-off delay in seconds (doubles, with jitter).
        timeout: seconds before a network operation is abandoned.
        cluster: the address of a Dask scheduler (``tcp://host:8786``) that runs downloads and
            the reading of many source files; empty: this machine's threads.
    Sources (what ``add`` and ``download`` may read; a record is checked again at download):
        source_schemes: URL schemes allowed (empty: any installed fsspec protocol).
        source_roots: local folders sources may come from (empty: anywhere for the command
            line and the Python API; nowhere for the web UI).
        allowed_hosts: hosts, addresses or CIDR ranges http(s) sources may use although they
            are loopback, link-local or private (refused otherwise).
    Jobs:
        job_lease: seconds a running job may go without a heartbeat before it shows as
            abandoned (its process died, or its machine).
        job_history_days: days finished jobs are kept for ``pygestor jobs --all``.
    Reading:
        partial_reads: reading a reference of which only some partitions are downloaded:
            ``warn`` (once, how many of how many), ``error``, or ``allow``.
        shuffle_memory: bytes of rows each DataLoader worker of a shuffled ``PygestorDataset``
            may hold to mix them (the shuffle window, the next one and its read-ahead).
    Cache (streaming from object stores):
        cache_dir: local folder for cached partitions; empty = no cache.
        cache_max_bytes: the cache's byte limit (least recently used evicted first).
    Web UI:
        ui_host, ui_port: where ``pygestor ui`` listens (loopback by default).
        ui_password: required to log in when listening off loopback.
    """

    data_dir: str = "./data"
    storage_options: dict[str, Any] = field(default_factory=dict)
    partition_size: int = 128 * 10**6
    row_group_size: int = 65536
    compression: str = "zstd"
    max_workers: int = 8
    retries: int = 5
    retry_backoff: float = 0.5
    timeout: float = 60.0
    cluster: str = ""
    source_schemes: list[str] = field(default_factory=list)
    source_roots: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    partial_reads: str = "warn"
    job_lease: float = 30.0
    job_history_days: float = 7.0
    shuffle_memory: int = 128 * 10**6
    cache_dir: str = ""
    cache_max_bytes: int = 10 * 10**9
    ui_host: str = "127.0.0.1"
    ui_port: int = 8080
    ui_password: str = ""
    #: where the settings came from, for ``pygestor config`` (not a setting itself)
    sources: tuple[str, ...] = ()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, config: str | os.PathLike[str] | None = None, *,
             env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Layer defaults < config file < environment < ``overrides`` (None values ignored)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        sources = ["defaults"]
        path = _config_path(config, env)
        if path is not None:
            values.update(_read_config_file(path))
            sources.append(f"file:{path}")
        env_values = _from_environment(env)
        if env_values:
            values.update(env_values)
            sources.append("environment")
        explicit = {k: v for k, v in overrides.items() if v is not None}
        if explicit:
            values.update(explicit)
            sources.append("arguments")
        values["sources"] = tuple(sources)
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Settings:
        """Validate and coerce a flat mapping of keys to values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; "
                              f"known keys: {', '.join(sorted(known - {'sources'}))}")
        coerced = {k: _coerce(k, v) for k, v in values.items()}
        settings = cls(**coerced)
        settings._check()
        return settings

    def _check(self) -> None:
        if not self.data_dir:
            raise ConfigError("data_dir is empty; set it in the config file, "
                              "PYGESTOR_DATA_DIR or --data-dir")
        for key in ("max_workers", "retries", "row_group_size", "ui_port", "shuffle_memory"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.job_lease < 2 or self.job_history_days < 0:
            raise ConfigError("job_lease must be at least 2 seconds and job_history_days >= 0")
        if self.timeout <= 0 or self.retry_backoff < 0:
            raise ConfigError("timeout must be > 0 and retry_backoff >= 0")
        if self.partial_reads not in PARTIAL_READS:
            raise ConfigError(f"partial_reads must be one of {', '.join(PARTIAL_READS)}, got "
                              f"{self.partial_reads!r}")

    # ------------------------------------------------------------------ views
    def redacted(self) -> dict[str, Any]:
        """All settings as plain data with every secret replaced by ``***``."""
        data = asdict(self)
        data["storage_options"] = redact(self.storage_options)
        if self.ui_password:
            data["ui_password"] = REDACTED
        data["data_dir"] = redact_url(self.data_dir)
        data["sources"] = list(self.sources)
        return data

    def without_secrets(self) -> Settings:
        """These settings with every secret-looking storage option dropped (at any depth) and
        no UI password: what may travel to another machine (a cluster's worker), which uses
        its own credentials."""
        def drop(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: drop(v) for k, v in value.items()
                        if not SECRET_KEY_PATTERN.search(str(k))}
            if isinstance(value, list):
                return [drop(v) for v in value]
            return value
        return replace(self, storage_options=drop(self.storage_options), ui_password="")

    def with_overrides(self, **overrides: Any) -> Settings:
        explicit = {k: _coerce(k, v) for k, v in overrides.items() if v is not None}
        settings = replace(self, **explicit)
        settings._check()
        return settings


def redact(value: Any) -> Any:
    """Copy of ``value`` with the values of secret-looking keys replaced by ``***``."""
    if isinstance(value, dict):
        return {k: (REDACTED if SECRET_KEY_PATTERN.search(str(k)) and v not in (None, "")
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_url(url: str) -> str:
    """Hide a ``user:password@`` part of a URL."""
    return re.sub(r"(?<=://)[^/@\s]+@", f"{REDACTED}@", url)


# ---------------------------------------------------------------------- helpers
def _config_path(config: str | os.PathLike[str] | None, env: dict[str, str]) -> Path | None:
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing TOML file")
        return path
    if env.get("PYGESTOR_CONFIG"):
        path = Path(env["PYGESTOR_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"PYGESTOR_CONFIG={path} does not exist; "
                              "point it at a TOML file or unset it")
        return path
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    values = _flatten(raw, str(path))
    data_dir = values.get("data_dir")
    if isinstance(data_dir, str) and data_dir and not _is_url(data_dir) \
            and not Path(data_dir).expanduser().is_absolute():
        values["data_dir"] = str((path.resolve().parent / data_dir).resolve())
    return values


#: TOML tables and the prefix their keys take in :class:`Settings`.
_TABLES = {"storage": "", "partitions": "", "download": "", "cache": "cache_", "ui": "ui_",
           "sources": "source_", "reading": "", "jobs": "job_"}


def _flatten(raw: dict[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _TABLES and isinstance(value, dict) and key != "storage_options":
            prefix = _TABLES[key]
            known = {f.name for f in fields(Settings)}
            for sub, subvalue in value.items():
                name = sub if sub.startswith(prefix) or sub in known else prefix + sub
                if sub == "options" and key == "storage":
                    name = "storage_options"
                values[name] = subvalue
        else:
            values[key] = value
    return values


def _from_environment(env: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "sources":
            continue
        raw = env.get(f"PYGESTOR_{f.name.upper()}")
        if raw is None or raw == "":
            continue
        if f.name == "storage_options":
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError("PYGESTOR_STORAGE_OPTIONS is not valid JSON "
                                  f"({exc.msg} at position {exc.pos}); "
                                  'expected an object like {"endpoint_url": "..."}') from None
            values[f.name] = parsed
        else:
            values[f.name] = raw
    return values


def _coerce(key: str, value: Any) -> Any:
    kinds = {f.name: f.type for f in fields(Settings)}
    kind = kinds.get(key)
    try:
        if key in ("partition_size", "cache_max_bytes", "shuffle_memory"):
            return parse_size(value, key)
        if key == "storage_options":
            if not isinstance(value, dict):
                raise ConfigError(f"storage_options must be a table/object, got {value!r}")
            return dict(value)
        if key == "sources":
            return tuple(value)
        if kind == "list[str]":
            if isinstance(value, str):
                value = json.loads(value) if value.strip().startswith("[") else \
                    [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)) or \
                    not all(isinstance(v, str) for v in value):
                raise ValueError
            return list(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "str":
            if not isinstance(value, (str, os.PathLike)):
                raise ValueError
            return os.fspath(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: invalid value {value!r} (expected {kind})") from None
    return value


def _is_url(path: str) -> bool:
    return "://" in path or "::" in path
