"""The NiceGUI application: where the UI gets its Manager, and how it is served.

The UI holds one :class:`~pygestor.manager.Manager` for the process (the storage root it serves);
everything a browser tab shows lives inside that tab's page functions (see ``pages.py``).
Tests set the manager with :func:`set_manager` and run the app in-process.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pygestor.errors import ConfigError
from pygestor.ui import auth

if TYPE_CHECKING:
    from pygestor.manager import Manager

#: set to reuse login sessions across restarts (otherwise random per process)
STORAGE_SECRET_ENV = "PYGESTOR_UI_STORAGE_SECRET"  # noqa: S105 - a variable name
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#4f46e5"/>'
    '<path d="M16 7l9 4.5-9 4.5-9-4.5z" fill="#fff"/>'
    '<path d="M7 16l9 4.5 9-4.5" fill="none" stroke="#c7d2fe" stroke-width="2.2" '
    'stroke-linejoin="round"/>'
    '<path d="M7 20.5l9 4.5 9-4.5" fill="none" stroke="#a5b4fc" stroke-width="2.2" '
    'stroke-linejoin="round"/></svg>')

_manager: Manager | None = None
_manager_lock = threading.Lock()


def set_manager(manager: Manager | None) -> None:
    """Use ``manager`` for every page from now on (``None``: build one from the settings)."""
    global _manager
    with _manager_lock:
        _manager = manager


def get_manager() -> Manager:
    global _manager
    with _manager_lock:
        if _manager is None:
            from pygestor.manager import Manager

            _manager = Manager()
        return _manager


def current_password() -> str:
    return get_manager().settings.ui_password


def build() -> None:
    """Register the login middleware and the pages on NiceGUI's app (before ``ui.run``)."""
    from nicegui import app

    from pygestor.ui import pages

    app.add_middleware(auth.middleware_class(current_password))
    pages.register()


def storage_secret() -> str:
    return os.environ.get(STORAGE_SECRET_ENV) or secrets.token_urlsafe(32)


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
    set_manager(manager)
    # login sessions live in the user's cache, not in a .nicegui folder in the working directory
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ.setdefault("NICEGUI_STORAGE_PATH", str(cache / "pygestor" / "ui-sessions"))
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
