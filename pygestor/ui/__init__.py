"""The web UI: a NiceGUI app over the operations of :mod:`pygestor.manager`.

``nicegui`` is imported only when the UI is served (``pygestor ui``), never by ``import pygestor``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pygestor.manager import Manager


def serve(manager: Manager, host: str | None = None, port: int | None = None) -> None:
    """Serve the UI for ``manager`` until interrupted (defaults: ``ui_host``, ``ui_port``).

    Raises :class:`~pygestor.errors.ConfigError` when asked to listen off loopback without a
    password (``ui_password`` / ``PYGESTOR_UI_PASSWORD``).
    """
    from pygestor.ui.app import serve as _serve

    _serve(manager, host=host, port=port)


__all__ = ["serve"]
