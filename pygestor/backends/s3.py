"""S3 (and S3-compatible stores): records written compare-and-swap.

A record is read together with its ETag (one ``GetObject``) and written back with
``PutObject(IfMatch=<etag>)``, or ``IfNoneMatch="*"`` to create it; a 412 means another writer
won, and the update is applied again to the winner's record. Records are small, so they always go
in one PUT (a multipart upload's completion does not honour ``IfMatch`` everywhere).
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar

from fsspec.asyn import sync

from pygestor.backends.objectstore import Conflict, ObjectStorage


class S3Storage(ObjectStorage):
    """A storage root in an S3 bucket (s3fs)."""

    has_buckets: ClassVar[bool] = True

    def cas_kind(self) -> bool:
        return True

    def _get(self, path: str) -> tuple[bytes | None, Any]:
        fs = self.fs
        bucket, key, _ = fs.split_path(path)

        async def get() -> tuple[bytes, str]:
            response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
            try:
                return await response["Body"].read(), response["ETag"]
            finally:
                response["Body"].close()
        try:
            return sync(fs.loop, get, timeout=self.call_bound())
        except FileNotFoundError:
            return None, None

    def _put(self, path: str, data: bytes, tag: Any) -> None:
        condition: dict[str, Any] = {"mode": "create"} if tag is None else {"IfMatch": tag}
        try:
            self.call("pipe_file", path, data, size=len(data), **condition)
        except FileExistsError:
            raise Conflict(path) from None
        except FileNotFoundError:
            raise Conflict(path) from None  # IfMatch on a record deleted meanwhile
        except OSError as exc:
            if _precondition_failed(exc):
                raise Conflict(path) from None
            raise


def _precondition_failed(exc: BaseException) -> bool:
    """s3fs reports a 412 as OSError(EINVAL) whose cause is the PreconditionFailed answer."""
    cause = exc.__cause__
    code = getattr(cause, "response", {}).get("Error", {}).get("Code") if cause else None
    return code in ("PreconditionFailed", "412") or \
        (getattr(exc, "errno", None) == errno.EINVAL and "pre-condition" in str(exc).lower())
