"""Making the fsspec filesystem of a URL, with the client time-outs and retries of the settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec

from pygestor.errors import StorageError

#: the package that provides each protocol, for the error that says what to install
INSTALL_HINTS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "hf": "hf"}
#: protocols of object stores (no listing cache: other processes write there)
OBJECT_STORES = ("s3", "s3a", "gs", "gcs")


def network_options(protocol: str, storage_options: dict[str, Any], timeout: float | None,
                    retries: int | None) -> dict[str, Any]:
    """``storage_options`` plus client time-outs and request retries, where the user set none.

    - s3 (s3fs/botocore): ``config_kwargs`` ``connect_timeout`` and ``read_timeout`` of
      ``timeout`` seconds, and at most 2 attempts per request in botocore's "standard" mode
      (one quick retry of a 5xx, a throttling answer, a dropped connection or a time-out, even
      in code paths that Pygestor does not wrap). s3fs's own retry loop is reduced to one
      attempt (see make_filesystem): its nested loops would multiply the attempts. The
      ``retries`` attempts with the configured back-off are made by :class:`Storage` (and the
      download, the loaders) around whole operations, so a request is tried at most
      ``2 * retries`` times and a stalled endpoint is given up after about
      ``2 * retries * timeout`` seconds plus back-off.
    - gs (gcsfs): ``requests_timeout`` (connect and read) of ``timeout`` seconds.
    - http/https (aiohttp): ``client_kwargs`` ``timeout`` (connect and read, no total limit),
      and ``trust_env`` (credentials from ``~/.netrc``, proxies from the environment).
    """
    options = dict(storage_options)
    if protocol in ("s3", "s3a") and (timeout is not None or retries is not None):
        config = dict(options.get("config_kwargs") or {})
        if timeout is not None:
            config.setdefault("connect_timeout", timeout)
            config.setdefault("read_timeout", timeout)
        if retries is not None:  # one quick retry per request; Storage retries operations
            config.setdefault("retries", {"total_max_attempts": min(2, max(1, int(retries))),
                                          "mode": "standard"})
        options["config_kwargs"] = config
    elif protocol in ("gs", "gcs") and timeout is not None:
        if "requests_timeout" not in options:
            import aiohttp

            options["requests_timeout"] = aiohttp.ClientTimeout(
                total=None, sock_connect=timeout, sock_read=timeout)
    elif protocol in ("http", "https"):
        client = dict(options.get("client_kwargs") or {})
        client.setdefault("trust_env", True)  # credentials from ~/.netrc, proxies from the env
        if "timeout" not in client and timeout is not None:
            import aiohttp

            client["timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                                      sock_read=timeout)
        options["client_kwargs"] = client
    return options


def make_filesystem(url: str, storage_options: dict[str, Any], *, timeout: float | None = None,
                    retries: int | None = None) -> tuple[Any, str]:
    """Create the fsspec filesystem for ``url`` and the root path inside it.

    With ``timeout``/``retries`` (from the settings), network clients get those time-outs and
    request retries unless ``storage_options`` set their own (:func:`network_options`).
    """
    options = dict(storage_options)
    if "://" not in url and "::" not in url:
        root = str(Path(url).expanduser().resolve())
        return fsspec.filesystem("file", **options), root
    protocol = url.split("://", 1)[0].split("::")[-1]
    if protocol in ("gs", "gcs"):
        # Without this, gcsfs probes for hierarchical-namespace support over gRPC at every call.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    user_config = options.get("config_kwargs") or {}
    options = network_options(protocol, options, timeout, retries)
    if protocol in OBJECT_STORES:
        # a long-lived process (the UI, a notebook) must see what other processes change
        options.setdefault("use_listings_cache", False)
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError:
        extra = INSTALL_HINTS.get(protocol)
        hint = f"pip install 'pygestor[{extra}]'" if extra else "install its fsspec backend"
        raise StorageError(f"no filesystem for {protocol}:// is installed; {hint}") from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise StorageError(f"unsupported URL scheme {protocol}:// in {url!r}; use a local "
                               "path, file://, s3://, gs://, memory:// or another fsspec "
                               "protocol") from None
        raise StorageError(f"invalid storage options for {protocol}://: {exc}") from None
    except TypeError as exc:
        raise StorageError(f"invalid storage options for {protocol}://: {exc}") from None
    if retries is not None and protocol in ("s3", "s3a") and "retries" not in user_config \
            and hasattr(fs, "retries"):
        fs.retries = 1  # botocore retries each request; Storage retries operations
    return fs, root.rstrip("/") or root
