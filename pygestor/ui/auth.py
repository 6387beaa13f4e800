"""Login for the web UI when a password is configured (``ui_password`` / ``PYGESTOR_UI_PASSWORD``).

A password is mandatory when the UI listens off loopback, and a blank one is refused (checked in
:func:`check_binding`); when one is set, every page and every action needs a logged-in session,
wherever the UI listens. Sessions live in NiceGUI's per-browser server-side storage, signed with
the storage secret (kept in the session folder, see :mod:`pygestor.ui.app`), and end when the
password changes.

Failed sign-ins are logged and slowed per client address (:class:`LoginThrottle`): each failure
doubles the wait before the answer, and :data:`MAX_FAILURES` failures in a row lock the address
out for :data:`LOCKOUT_SECONDS`. Behind a reverse proxy every client has the proxy's address: the
lockout then holds for all of them (the ``X-Forwarded-For`` header is not trusted: anyone can
write it).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from pygestor.errors import ConfigError

log = logging.getLogger("pygestor.ui")

#: storage key of the login marker: HMAC(server secret, password), so a session ends when the
#: password changes, or when the server restarts with a new (random) secret
SESSION_KEY = "pygestor_login"
_secret = secrets.token_urlsafe(32)
#: pages reachable without a session
PUBLIC_PATHS = {"/login"}
#: seconds to wait after a first wrong password; doubled at each failure in a row
FAILURE_DELAY = 0.5
#: the longest wait after a wrong password
MAX_DELAY = 8.0
#: failures in a row (within :data:`FAILURE_WINDOW`) that lock a client address out
MAX_FAILURES = 5
#: seconds a locked-out address waits before it may try again
LOCKOUT_SECONDS = 300.0
#: failures older than this many seconds are forgotten
FAILURE_WINDOW = 900.0


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_binding(host: str, password: str) -> None:
    """Refuse a blank password, and listening off loopback without a password."""
    if password and not password.strip():
        raise ConfigError("ui_password is blank (only spaces): set a real password in the config "
                          "file or PYGESTOR_UI_PASSWORD, or none to serve on loopback only")
    if not is_loopback(host) and not password:
        raise ConfigError(
            f"refusing to serve the UI on {host}, which is not a loopback address, without a "
            "password: set ui_password in the config file or PYGESTOR_UI_PASSWORD in the "
            "environment, or listen on 127.0.0.1")


def password_matches(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def safe_redirect(target: str | None) -> str:
    """Only local paths: ``/dataset/x`` yes, ``//evil.example`` or ``https://...`` no."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_url(path: str) -> str:
    return "/login?redirect_to=" + quote(safe_redirect(path), safe="")


def set_secret(secret: str) -> None:
    """The server's secret (the storage secret): login markers are signed with it."""
    global _secret
    _secret = secret


def _marker(password: str) -> str:
    return hmac.new(_secret.encode(), password.encode(), hashlib.sha256).hexdigest()


def logged_in(password: str) -> bool:
    from nicegui import app

    try:
        stored = app.storage.user.get(SESSION_KEY)
    except (RuntimeError, AssertionError, KeyError):
        return False
    return isinstance(stored, str) and hmac.compare_digest(stored, _marker(password))


def log_in(password: str) -> None:
    from nicegui import app

    app.storage.user[SESSION_KEY] = _marker(password)


def log_out() -> None:
    from nicegui import app

    app.storage.user.pop(SESSION_KEY, None)


def middleware_class(password: Callable[[], str]) -> type:
    """A Starlette middleware that sends every request without a session to the login page.

    ``password`` returns the current password ("" = no login needed); NiceGUI's own assets and
    websocket (``/_nicegui...``) stay reachable so the login page itself can load.
    """
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import RedirectResponse

    class LoginRequired(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next):  # type: ignore[no-untyped-def]
            path = request.url.path
            current = password()
            if current and not path.startswith("/_nicegui") and path not in PUBLIC_PATHS \
                    and not logged_in(current):
                target = path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(login_url(target), status_code=303)
            return await call_next(request)

    return LoginRequired


# ====================================================================== throttling
@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failed sign-ins per client address: growing waits, then a lockout; logged."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._clients: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def locked_for(self, client: str) -> float:
        """Seconds ``client`` must still wait before it may try again (0: it may)."""
        with self._lock:
            found = self._clients.get(client)
            return max(0.0, found.locked_until - self._clock()) if found else 0.0

    def failed(self, client: str) -> float:
        """Record a failure of ``client``; returns the seconds to wait before answering."""
        now = self._clock()
        with self._lock:
            self._forget_old(now)
            found = self._clients.setdefault(client, _Failures())
            if now - found.last > FAILURE_WINDOW:
                found.count = 0
            found.count += 1
            found.last = now
            if found.count >= MAX_FAILURES:
                found.locked_until = now + LOCKOUT_SECONDS
            count, locked = found.count, found.count >= MAX_FAILURES
        log.warning("failed sign-in to the web UI from %s (%d in a row)%s", client, count,
                    f"; locked out for {LOCKOUT_SECONDS:g} s" if locked else "")
        return min(MAX_DELAY, FAILURE_DELAY * 2 ** (count - 1))

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def _forget_old(self, now: float) -> None:
        if len(self._clients) > 10_000:
            for key in [k for k, v in self._clients.items()
                        if now - v.last > FAILURE_WINDOW and now >= v.locked_until]:
                del self._clients[key]


#: the throttle of this process's login page
THROTTLE = LoginThrottle()
