"""Google Cloud Storage: records written compare-and-swap with object generations.

A record is read with its generation (``X-Goog-Generation`` of one media download) and written
back by a JSON-API multipart upload with ``ifGenerationMatch=<generation>`` (``0`` to create);
a 412 means another writer won. gcsfs itself offers only create-if-absent, hence the direct call.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar
from urllib.parse import quote

from fsspec.asyn import sync

from pygestor.backends.objectstore import Conflict, ObjectStorage


class GCSStorage(ObjectStorage):
    """A storage root in a GCS bucket (gcsfs)."""

    has_buckets: ClassVar[bool] = True

    def cas_kind(self) -> bool:
        return True

    def _get(self, path: str) -> tuple[bytes | None, Any]:
        fs = self.fs
        bucket, key, _ = fs.split_path(path)
        url = f"{fs._location}/download/storage/v1/b/{bucket}/o/{quote(key, safe='')}"

        async def get() -> tuple[Any, bytes]:
            return await fs._call("GET", url, alt="media")
        try:
            headers, body = sync(fs.loop, get, timeout=self.call_bound())
        except FileNotFoundError:
            return None, None
        generation = {k.lower(): v for k, v in headers.items()}.get("x-goog-generation")
        return body, generation

    def _put(self, path: str, data: bytes, tag: Any) -> None:
        fs = self.fs
        bucket, key, _ = fs.split_path(path)
        boundary = f"pygestor-{uuid.uuid4().hex}"
        body = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                f"{json.dumps({'name': key})}\r\n--{boundary}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
            f"\r\n--{boundary}--\r\n".encode()

        async def put() -> Any:
            return await fs._call(
                "POST", f"{fs._location}/upload/storage/v1/b/{bucket}/o",
                uploadType="multipart", ifGenerationMatch=str(tag or 0),
                headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
                data=body, json_out=True)
        try:
            sync(fs.loop, put, timeout=self.call_bound(len(body)))
        except FileExistsError:  # gcsfs's name for a 412
            raise Conflict(path) from None
