"""Main file for NiceGUI's pytest plugin (``main_file`` in pyproject.toml).

Runs the Pygestor UI in-process, with the manager the test set through
``pygestor.ui.app.set_manager``.
"""

from pygestor.ui import app

app.start()
