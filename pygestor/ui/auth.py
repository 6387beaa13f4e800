"""Login for the web UI when a password is configured (``ui_password`` / ``PYGESTOR_UI_PASSWORD``).

A password is mandatory when the UI listens off loopback (checked in :func:`check_binding`); when
one is set, every page and every action needs a logged-in session, wherever the UI listens.
Sessions live in NiceGUI's per-browser server-side storage, signed with the storage secret (random
per process unless ``PYGESTOR_UI_STORAGE_SECRET`` is set), and end when the password changes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable
from urllib.parse import quote

from pygestor.errors import ConfigError

#: storage key of the login marker: HMAC(server secret, password), so a session ends when the
#: password changes, or when the server restarts with a new (random) secret
SESSION_KEY = "pygestor_login"
_secret = secrets.token_urlsafe(32)
#: pages reachable without a session
PUBLIC_PATHS = {"/login"}
#: seconds to wait after a wrong password (slows down guessing)
FAILURE_DELAY = 0.5


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_binding(host: str, password: str) -> None:
    """Refuse to listen off loopback without a password."""
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
