"""What a source may be: the checks every source URL passes before anything reads it.

- **No credentials in a URL.** User names and passwords (``https://bob:pw@host/``), tokens and
  presigned signatures in query strings are refused: records, logs and the UI would carry them.
  Credentials come from where each client looks for them at use time (``~/.netrc`` for http,
  ``AWS_*`` / profiles for S3, ``GOOGLE_APPLICATION_CREDENTIALS`` for GCS, ``HF_TOKEN`` for the
  Hub).
- **Schemes and local roots** (settings ``source_schemes``, ``source_roots``). The command line
  and the Python API run as the user on the user's machine and may read any local path unless
  roots are set; the web UI, which fetches on behalf of whoever reaches it, reads local paths
  only below configured roots.
- **No private addresses** over http(s): a host that resolves to a loopback, link-local, private,
  multicast or reserved address is refused unless the settings' ``allowed_hosts`` names it (or
  its address, or a CIDR range holding it). Cloud metadata services live there.

Records are untrusted input too: the operations layer checks every URL a record asks a pipeline
to read, at every download, with the same policy.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pygestor.config import SECRET_KEY_PATTERN, Settings
from pygestor.errors import PolicyError

#: query parameters that carry credentials (presigned URLs of S3, GCS, Azure; API tokens)
CREDENTIAL_PARAMS = {"x-amz-signature", "x-amz-credential", "x-amz-security-token",
                     "x-goog-signature", "x-goog-credential", "sig", "signature", "se", "sv",
                     "googleaccessid", "awsaccesskeyid", "access_token", "api_key", "apikey"}
WHERE_CREDENTIALS_GO = ("credentials are read at use time from where each client looks for them "
                        "(~/.netrc for http, AWS_* variables or ~/.aws for S3, "
                        "GOOGLE_APPLICATION_CREDENTIALS for GCS, HF_TOKEN for the Hub) and are "
                        "never stored")
LOCAL_SCHEMES = ("file", "local")
NETWORK_SCHEMES = ("http", "https")


def check_no_credentials(url: str) -> None:
    """Refuse a URL that carries a user name, a password, a token or a signature."""
    parts = urlsplit(url)
    if "://" in url and (parts.username or parts.password or "@" in parts.netloc):
        raise PolicyError(f"the source URL {_shown(url)} carries a user name or password; "
                          f"remove it from the URL: {WHERE_CREDENTIALS_GO}")
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        lowered = key.lower()
        if lowered in CREDENTIAL_PARAMS or SECRET_KEY_PATTERN.search(lowered):
            raise PolicyError(f"the source URL {_shown(url)} carries a credential in its query "
                              f"({key}=...); use the URL without it: {WHERE_CREDENTIALS_GO}")


def drop_secrets(value: Any) -> tuple[Any, list[str]]:
    """A copy of ``value`` without secret-looking keys at any depth, and the dotted paths of the
    keys dropped (for a notice)."""
    dropped: list[str] = []

    def walk(item: Any, prefix: str) -> Any:
        if isinstance(item, dict):
            kept = {}
            for key, sub in item.items():
                path = f"{prefix}{key}"
                if SECRET_KEY_PATTERN.search(str(key)):
                    dropped.append(path)
                    continue
                kept[key] = walk(sub, path + ".")
            return kept
        if isinstance(item, list):
            return [walk(sub, f"{prefix}{i}.") for i, sub in enumerate(item)]
        return item
    return walk(value, ""), dropped


@dataclass(frozen=True)
class SourcePolicy:
    """The sources one face of Pygestor may read.

    Args:
        schemes: allowed URL schemes (empty: any).
        local_roots: local folders sources may come from; None: anywhere.
        allowed_hosts: host names, addresses or CIDR ranges allowed although private.
    """

    schemes: tuple[str, ...] = ()
    local_roots: tuple[str, ...] | None = None
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def for_settings(cls, settings: Settings, face: str = "cli") -> SourcePolicy:
        """The policy of the command line / Python API (``face="cli"``) or the web UI."""
        roots = tuple(os.path.realpath(os.path.expanduser(r)) for r in settings.source_roots)
        return cls(schemes=tuple(s.lower() for s in settings.source_schemes),
                   local_roots=roots if roots or face == "ui" else None,
                   allowed_hosts=tuple(settings.allowed_hosts))

    # ------------------------------------------------------------------ checks
    def check(self, url: str, options: dict[str, Any] | None = None) -> None:
        """Refuse ``url`` (and an endpoint its ``source_options`` name) unless allowed."""
        check_no_credentials(url)
        scheme = scheme_of(url)
        if self.schemes and scheme not in self.schemes and \
                not (scheme in LOCAL_SCHEMES and "file" in self.schemes):
            raise PolicyError(f"sources with the {scheme}:// scheme are not allowed here "
                              f"(source_schemes: {', '.join(self.schemes)})")
        if scheme in LOCAL_SCHEMES:
            self.check_local(local_path(url))
        elif scheme in NETWORK_SCHEMES:
            self.check_host(urlsplit(url).hostname or "", url)
        for endpoint in _endpoints(options or {}):
            check_no_credentials(endpoint)
            self.check_host(urlsplit(endpoint).hostname or "", endpoint)

    def check_local(self, path: str) -> None:
        """A local path must lie below a configured root (after resolving symlinks)."""
        if self.local_roots is None:
            return
        real = os.path.realpath(path)
        if not any(_inside(real, root) for root in self.local_roots):
            if not self.local_roots:
                raise PolicyError("local paths are not allowed as sources here; an admin can "
                                  "allow folders with the source_roots setting")
            raise PolicyError(f"{path} is outside the folders sources may come from "
                              f"(source_roots: {', '.join(self.local_roots)})")

    def check_host(self, host: str, url: str) -> None:
        """Refuse a host that is, or resolves to, a non-public address, unless allowed."""
        if not host:
            raise PolicyError(f"{_shown(url)} names no host")
        if self._allowed(host, ()):
            return
        addresses = _resolve(host)
        if self._allowed(host, addresses):
            return
        private = [a for a in addresses if not a.is_global]
        if private:
            raise PolicyError(f"{_shown(url)}: {host} is a {_kind(private[0])} address "
                              f"({private[0]}); such sources are refused unless the "
                              "allowed_hosts setting names them")

    def _allowed(self, host: str, addresses: Iterable[ipaddress._BaseAddress]) -> bool:
        found = list(addresses)
        for entry in self.allowed_hosts:
            if entry.lower() == host.lower():
                return True
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
            if found and all(a in network for a in found):
                return True
            try:
                if ipaddress.ip_address(host.strip("[]")) in network:
                    return True
            except ValueError:
                pass
        return False


def scheme_of(url: str) -> str:
    if "://" not in url:
        return "file"
    return url.split("://", 1)[0].split("::")[-1].lower()


def local_path(url: str) -> str:
    path = url.split("://", 1)[1] if "://" in url else url
    return os.path.expanduser(path)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _resolve(host: str) -> list[ipaddress._BaseAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return []  # unresolvable: the fetch fails with its own clear error
    found = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        try:
            found.append(ipaddress.ip_address(address))
        except ValueError:
            continue
    return found


def _kind(address: ipaddress._BaseAddress) -> str:
    for attribute, name in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                            ("is_private", "private"), ("is_multicast", "multicast")):
        if getattr(address, attribute, False):
            return name
    return "non-public"


def _endpoints(options: dict[str, Any]) -> list[str]:
    """Endpoint URLs named in ``source_options`` (where a client would connect)."""
    source = options.get("source_options") or {}
    found = []
    for holder in (source, source.get("client_kwargs") or {}):
        if isinstance(holder, dict):
            for key in ("endpoint_url", "endpoint"):
                if isinstance(holder.get(key), str):
                    found.append(holder[key])
    return found


def _shown(url: str) -> str:
    from pygestor.errors import short_text

    return short_text(url, limit=200)
