"""data_dir on S3: the same calls, with the storage root in a bucket.

    python examples/s3_data_dir.py [ENDPOINT_URL]

Without an argument it starts moto's S3 server on 127.0.0.1 (``pip install 'moto[server]'``) so
it runs anywhere; with one (e.g. a MinIO or real S3 endpoint) it uses that, with credentials
from the usual AWS environment variables or profile. The same works for GCS with
``gs://bucket/prefix`` (gcsfs).
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_toy import generate

import pygestor

BUCKET = "pygestor-example"


def start_local_s3() -> tuple[str, object]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "example")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "example")
    return f"http://127.0.0.1:{port}", server


def main() -> None:
    server = None
    if len(sys.argv) > 1:
        endpoint = sys.argv[1]
    else:
        endpoint, server = start_local_s3()
    options = {"client_kwargs": {"endpoint_url": endpoint}}
    try:
        import s3fs

        fs = s3fs.S3FileSystem(**options)
        if not fs.exists(BUCKET):
            fs.mkdir(BUCKET)
        # the same as PYGESTOR_DATA_DIR=s3://... and PYGESTOR_STORAGE_OPTIONS='{...}'
        pygestor.configure(data_dir=f"s3://{BUCKET}/datasets", storage_options=options)
        with tempfile.TemporaryDirectory() as tmp:
            source = generate(Path(tmp) / "toy", rows=3000)
            pygestor.add_dataset("toy", str(source), pipeline="files", partition_size="100KB")
            report = pygestor.download("toy", progress=False)
        print(f"downloaded into s3://{BUCKET}/datasets: {report}")
        print(f"objects: {len(fs.find(f'{BUCKET}/datasets'))}")
        print(f"toy/train from S3: {len(pygestor.load('toy/train'))} rows")
        print("partition URLs for other engines:", pygestor.urls("toy/test")["urls"])
        print(f"verify: {'clean' if pygestor.verify('toy').clean else 'problems'}")
        pygestor.delete_dataset("toy")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
