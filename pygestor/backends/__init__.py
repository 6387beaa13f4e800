"""Storage: an fsspec filesystem rooted at ``data_dir``, with atomic writes, locks and retries."""

from pygestor.backends.storage import Storage, open_storage

__all__ = ["Storage", "open_storage"]
