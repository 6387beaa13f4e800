"""The NiceGUI application: where the UI gets its Manager, and how it is served.

The UI uses the process's one :class:`~pygestor.manager.Manager`, the Python API's
(:func:`pygestor.api.get_manager`): ``pygestor ui`` sets it with :func:`pygestor.api.set_manager`,
and so do tests that run the app in-process. Everything a browser tab shows lives inside that
tab's page functions (``pages.py`` and the components they build).

Login sessions live in a folder of their own (``NICEGUI_STORAGE_PATH``, by default
``~/.cache/pygestor/ui-sessions``), created on start with owner-only permissions, signed with a
secret kept there (or ``PYGESTOR_UI_STORAGE_SECRET``), so they survive a restart.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from pygestor.errors import ConfigError
from pygestor.ui import auth

if TYPE_CHECKING:
    from pygestor.manager import Manager

#: set to choose the secret that signs login sessions (otherwise one kept in the session folder)
STORAGE_SECRET_ENV = "PYGESTOR_UI_STORAGE_SECRET"  # noqa: S105 - a variable name
#: where NiceGUI keeps per-browser storage (read by NiceGUI when it is imported)
SESSIONS_ENV = "NICEGUI_STORAGE_PATH"
SECRET_FILE = "pygestor-secret"  # noqa: S105 - a file name
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#4f46e5"/>'
    '<path d="M16 7l9 4.5-9 4.5-9-4.5z" fill="#fff"/>'
    '<path d="M7 16l9 4.5 9-4.5" fill="none" stroke="#c7d2fe" stroke-width="2.2" '
    'stroke-linejoin="round"/>'
    '<path d="M7 20.5l9 4.5 9-4.5" fill="none" stroke="#a5b4fc" stroke-width="2.2" '
    'stroke-linejoin="round"/></svg>')


def get_manager() -> Manager:
    """The process's manager: the Python API's (one per process)."""
    from pygestor.api import get_manager as api_manager

    return api_manager()


def current_password() -> str:
    return get_manager().settings.ui_password


def build() -> None:
    """Register the login middleware and the pages on NiceGUI's app (before ``ui.run``)."""
    from nicegui import app

    from pygestor.ui import pages

    app.add_middleware(auth.middleware_class(current_password))
    pages.register()


def storage_secret() -> str:
    """The secret that signs sessions: ``PYGESTOR_UI_STORAGE_SECRET``, else the one kept in the
    session folder (made once), else a random one for this process."""
    if os.environ.get(STORAGE_SECRET_ENV):
        return os.environ[STORAGE_SECRET_ENV]
    folder = os.environ.get(SESSIONS_ENV)
    if folder and Path(folder).is_dir():
        return _kept_secret(Path(folder) / SECRET_FILE)
    return secrets.token_urlsafe(32)


def prepare_sessions() -> Path:
    """Create the session folder (owner-only) and point NiceGUI at it; returns it."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = Path(os.environ.setdefault(SESSIONS_ENV, str(cache / "pygestor" / "ui-sessions")))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        folder.chmod(0o700)
    return folder


def _kept_secret(path: Path) -> str:
    """The secret in ``path``, written first (owner-only, never replaced) if missing."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        kept = path.read_text().strip()
        if len(kept) >= 32:
            return kept
        raise ConfigError(f"{path} holds no usable session secret; delete it (everyone will "
                          "have to sign in again)") from None
    with os.fdopen(handle, "w") as out:
        secret = secrets.token_urlsafe(32)
        out.write(secret)
    return secret


def start(host: str | None = None, port: int | None = None, *, check_port: bool = False) -> None:
    """Check the address, register the pages and run NiceGUI (blocks until stopped)."""
    from nicegui import ui

    settings = get_manager().settings
    host = host or settings.ui_host
    port = port or settings.ui_port
    auth.check_binding(host, settings.ui_password)
    if check_port:
        _check_port_free(host, port)
    build()
    if check_port:
        shown = f"[{host}]" if ":" in host else host
        login = " (login required)" if settings.ui_password else ""
        print(f"Pygestor UI on http://{shown}:{port}{login}; press Ctrl+C to stop", flush=True)
    secret = storage_secret()
    auth.set_secret(secret)
    ui.run(host=host, port=port, title="Pygestor", favicon=FAVICON, reload=False, show=False,
           storage_secret=secret, show_welcome_message=False,
           uvicorn_logging_level="warning")


def serve(manager: Manager, host: str | None = None, port: int | None = None) -> None:
    """Serve the UI for ``manager`` (made the process's manager) until interrupted."""
    from pygestor.api import set_manager

    set_manager(manager)
    auth.check_binding(host or manager.settings.ui_host, manager.settings.ui_password)
    prepare_sessions()  # before NiceGUI is imported: it reads the folder then
    start(host, port, check_port=True)


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another "
                              "--port or --host, or set ui_port / ui_host") from None
