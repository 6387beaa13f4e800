"""Reading source files (parquet, CSV, JSON Lines; gzip/bz2/xz) and writing partitions.

All of it streams: a partition is read as a sequence of record batches and written a row group
at a time, so memory is bounded by a row group (or one source row group for parquet sources),
whatever the size of the source file.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from pygestor.errors import NotSupportedError, SourceError, short_text

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
CSV_SUFFIXES = (".csv", ".tsv")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
COMPRESSION_SUFFIXES = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}
#: bytes of the first text file of a subset read to infer its column types at ``add``
INFER_BYTES = 1 << 20
#: bytes of every other text file read at ``add`` (header, first lines: columns and types)
PROBE_BYTES = 64 << 10
#: a JSON array file is parsed whole: larger ones are refused (JSON Lines is read in ranges)
JSON_ARRAY_MAX_BYTES = 512 << 20
#: write a row group once this many bytes are buffered, even before row_group_size rows
ROW_GROUP_MAX_BYTES = 64 << 20
#: the footer key-value entry that holds a partition file's provenance
PROVENANCE_KEY = "pygestor"
#: a preview before downloading reads at most this many (compressed) bytes of a source file
PREVIEW_MAX_BYTES = 64 << 20
#: bytes of a text source read for a preview (whole lines)
PREVIEW_TEXT_BYTES = 1 << 20


def source_format(path: str) -> tuple[str, str | None] | None:
    """(format, compression) from a file name, or None for files Pipeline ignores."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.startswith((".", "_")):
        return None
    compression = None
    for suffix, codec in COMPRESSION_SUFFIXES.items():
        if name.endswith(suffix):
            compression, name = codec, name[: -len(suffix)]
            break
    if name.endswith(PARQUET_SUFFIXES) and compression is None:
        return "parquet", None
    if name.endswith(CSV_SUFFIXES):
        return "csv", compression
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl", compression
    return None


# ---------------------------------------------------------------------- schemas
def schema_to_text(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _widen(schema: pa.Schema) -> pa.Schema:
    """Columns that were empty in the sample become strings rather than nulls."""
    return pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                      for f in schema], metadata=schema.metadata)


# ---------------------------------------------------------------------- text ranges
class LineRange(io.RawIOBase):
    """The whole lines of a byte stream that *start* in ``[start, stop)``.

    A line that starts before ``stop`` and ends after it belongs to this range, and the next
    range skips it: consecutive ranges cover every line exactly once (Hadoop's split rule).
    ``stop=None`` reads to the end. Seeks when the stream can, else reads and discards.
    """

    def __init__(self, raw: Any, start: int, stop: int | None, seekable: bool) -> None:
        super().__init__()
        self._raw = raw
        self._stop = stop
        self._pos = 0
        self._pending = b""
        self._done = False
        if start > 0:
            if seekable:
                raw.seek(start - 1)
                self._pos = start - 1
            else:
                self._discard(start - 1)
            previous = raw.read(1)
            self._pos += len(previous)
            if previous and previous != b"\n":
                self._pos += len(raw.readline())  # that line belongs to the previous range

    def _discard(self, count: int) -> None:
        while count > 0:
            chunk = self._raw.read(min(count, 8 << 20))
            if not chunk:
                break
            count -= len(chunk)
            self._pos += len(chunk)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            self._fill()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _fill(self) -> None:
        if self._stop is None:
            chunk = self._raw.read(4 << 20)
            self._pending, self._done = chunk, not chunk
            return
        if self._pos >= self._stop:
            self._done = True
            return
        chunk = self._raw.read(min(4 << 20, self._stop - self._pos))
        if not chunk:
            self._done = True
            return
        self._pos += len(chunk)
        if self._pos >= self._stop and not chunk.endswith(b"\n"):
            rest = self._raw.readline()  # finish the line that started inside the range
            self._pos += len(rest)
            chunk += rest
        self._pending = chunk


def open_text_range(fs: Any, path: str, compression: str | None, start: int,
                    stop: int | None, stream: bool = False) -> io.BufferedReader:
    """The lines starting in ``[start, stop)`` of a text file; ``stream`` reads it from the
    start without seeking (an HTTP server without range requests)."""
    extra = {"block_size": 0} if stream else {}
    handle = fs.open(path, "rb", compression=compression, **extra)
    seekable = compression is None and not stream
    return io.BufferedReader(LineRange(handle, start, stop, seekable=seekable),
                             buffer_size=4 << 20)


def sniff_json(fs: Any, path: str, compression: str | None) -> str:
    """``json`` for a file holding one JSON array of records, else ``jsonl`` (JSON Lines)."""
    with fs.open(path, "rb", compression=compression) as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "json" if head.startswith(b"[") else "jsonl"


@dataclass
class TextProbe:
    """What a text source file holds, from its first bytes: column types, and for CSV the
    header's column names in file order (a range read later needs them)."""

    schema: pa.Schema
    columns: list[str] | None = None


def probe_text(fs: Any, path: str, fmt: str, compression: str | None,
               options: dict[str, Any], sample_bytes: int) -> TextProbe:
    """Columns and types of a CSV / JSON Lines / JSON file from its first ``sample_bytes``
    (whole lines only; a JSON array file is read whole, up to :data:`JSON_ARRAY_MAX_BYTES`).

    ``column_types`` overrides apply to the columns this file has.
    """
    if fmt == "json":
        records = read_json_records(fs, path, compression, limit=sample_rows(sample_bytes))
        try:
            schema = pa.Table.from_pylist(records).schema if records else pa.schema([])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceError(f"{path}: records of mixed types: {short_text(exc)}") from None
        return TextProbe(_apply_overrides(_widen(schema), options))
    with fs.open(path, "rb", compression=compression) as handle:
        head = handle.read(sample_bytes)
        more = handle.read(1)
    if more and b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]
    if not head.strip():
        raise SourceError(f"{path}: the file is empty; remove it from the source")
    try:
        if fmt == "csv":
            table = pacsv.read_csv(io.BytesIO(head), read_options=_csv_read_options(options),
                                   parse_options=_csv_parse_options(path, options))
        else:
            table = pajson.read_json(io.BytesIO(head))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SourceError(f"{path}: cannot parse as {fmt.upper()}: {short_text(exc)}") from None
    schema = _apply_overrides(_widen(table.schema), options)
    return TextProbe(schema, list(table.column_names) if fmt == "csv" else None)


def sample_rows(sample_bytes: int) -> int:
    """Records of a JSON array used to infer types (about one per 100 sample bytes)."""
    return max(100, sample_bytes // 100)


def _apply_overrides(schema: pa.Schema, options: dict[str, Any]) -> pa.Schema:
    overrides = options.get("column_types") or {}
    if not isinstance(overrides, dict):
        raise SourceError(f"column_types must map column names to type names, got {overrides!r}")
    for column, type_name in overrides.items():
        index = schema.get_field_index(column)
        if index < 0:
            continue  # checked against the subset's columns once all files are read
        try:
            schema = schema.set(index, pa.field(column, pa.type_for_alias(str(type_name))))
        except ValueError:
            raise SourceError(f"column_types: unknown type {type_name!r} for {column!r}; use "
                              "arrow type names like int64, double, string, bool, "
                              "timestamp[s]") from None
    return schema


def check_overrides(schema: pa.Schema, options: dict[str, Any], where: str) -> None:
    """``column_types`` may only name columns the subset has."""
    for column in options.get("column_types") or {}:
        if column not in schema.names:
            raise SourceError(f"column_types names column {column!r}, which {where} does not "
                              f"have; it has {', '.join(schema.names)}")


def _csv_read_options(options: dict[str, Any], column_names: list[str] | None = None,
                      skip_header: bool = False) -> pacsv.ReadOptions:
    return pacsv.ReadOptions(block_size=4 << 20, column_names=column_names,
                             skip_rows=1 if skip_header else 0,
                             encoding=options.get("encoding") or "utf8",
                             autogenerate_column_names=options.get("header") is False
                             and column_names is None)


def _csv_parse_options(path: str, options: dict[str, Any]) -> pacsv.ParseOptions:
    delimiter = options.get("delimiter") or ("\t" if ".tsv" in path.lower() else ",")
    return pacsv.ParseOptions(delimiter=delimiter)


def splittable_encoding(encoding: str | None) -> bool:
    """Whether a file in ``encoding`` can be cut at newline bytes (ASCII-compatible codecs)."""
    if not encoding:
        return True
    try:
        return "\n".encode(encoding) == b"\n" and "a\nb".encode(encoding) == b"a\nb"
    except (LookupError, ValueError):
        raise SourceError(f"unknown encoding {encoding!r}; use a Python codec name like "
                          "utf-8, latin-1 or cp1252") from None


def iter_text_batches(fs: Any, path: str, fmt: str, compression: str | None, start: int,
                      stop: int | None, schema: pa.Schema, options: dict[str, Any], *,
                      columns: list[str] | None = None, fill_missing: bool = False,
                      stream: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of the lines that start in ``[start, stop)``, as ``schema``.

    Args:
        fs, path, fmt, compression: the source file (``csv``, ``jsonl`` or ``json``).
        start, stop: the byte range (``stop=None``: to the end).
        schema: the subset's columns; the file's are matched to them by name.
        options: the dataset's parsing options (delimiter, header, encoding).
        columns: the file's CSV header, in file order (None: ``schema``'s names, as records
            written before headers were kept).
        fill_missing: columns the file lacks become nulls (``schema="union"``).
        stream: read from the start without seeking (servers without range requests).
    """
    if fmt == "json":
        yield from iter_json_array(fs, path, compression, schema, fill_missing)
        return
    stream_file = open_text_range(fs, path, compression, start, stop, stream=stream)
    try:
        if fmt == "csv":
            names = columns or schema.names
            has_header = options.get("header", True) is not False
            reader = pacsv.open_csv(
                stream_file,
                read_options=_csv_read_options(options, column_names=names,
                                               skip_header=has_header and start == 0),
                parse_options=_csv_parse_options(path, options),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: schema.field(n).type for n in names if n in schema.names},
                    strings_can_be_null=True))
        else:
            reader = pajson.open_json(
                stream_file, read_options=pajson.ReadOptions(block_size=4 << 20),
                parse_options=pajson.ParseOptions(explicit_schema=schema,
                                                  unexpected_field_behavior="error"))
        for batch in reader:
            yield conform(batch, schema, fill_missing=fill_missing)
    except StopIteration:
        return
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        if "Empty CSV file" in str(exc) or "Empty JSON" in str(exc):
            return
        raise SourceError(f"{path}: bytes {start}-{stop or 'end'}: {short_text(exc)}; the schema "
                          "was inferred from the file's first MB: fix the file, or pass "
                          "column_types={...} when adding the dataset") from None
    finally:
        stream_file.close()


def read_json_records(fs: Any, path: str, compression: str | None,
                      limit: int | None = None) -> list[dict[str, Any]]:
    """The records of a file holding one JSON array of objects (``limit``: the first ones)."""
    with fs.open(path, "rb", compression=compression) as handle:
        raw = handle.read(JSON_ARRAY_MAX_BYTES + 1)
    if len(raw) > JSON_ARRAY_MAX_BYTES:
        raise SourceError(f"{path}: a JSON array file larger than {JSON_ARRAY_MAX_BYTES} bytes is "
                          "read whole into memory; convert it to JSON Lines (one record per "
                          "line), which is read in ranges")
    try:
        records = orjson.loads(raw)
    except ValueError as exc:
        raise SourceError(f"{path}: not valid JSON ({short_text(exc)})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise SourceError(f"{path}: a .json file must hold an array of objects (records) or "
                          "one object per line")
    return records if limit is None else records[:limit]


def iter_json_array(fs: Any, path: str, compression: str | None, schema: pa.Schema,
                    fill_missing: bool, batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
    """The records of a JSON array file as batches of ``schema`` (columns by name)."""
    records = read_json_records(fs, path, compression)
    known = set(schema.names)
    for offset in range(0, len(records), batch_rows):
        chunk = records[offset:offset + batch_rows]
        for number, record in enumerate(chunk, start=offset):
            if not known.issuperset(record):
                extra = sorted(set(record) - known)[:5]
                raise SourceError(f"{path}: record {number} has column(s) "
                                  f"{', '.join(map(repr, extra))} the subset does not; register "
                                  "the dataset with schema='union' to take every column")
            if not fill_missing and len(record) != len(known):
                missing = sorted(known - set(record))[:5]
                raise SourceError(f"{path}: record {number} lacks {', '.join(map(repr, missing))}"
                                  "; register the dataset with schema='union' to fill it with "
                                  "nulls")
        try:
            table = pa.Table.from_pylist(chunk, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceError(f"{path}: records {offset}-{offset + len(chunk)}: "
                              f"{short_text(exc)}; pass column_types={{...}} when adding the "
                              "dataset") from None
        yield from table.to_batches()


# ---------------------------------------------------------------------- parquet
def open_parquet(fs: Any, path: str) -> pq.ParquetFile:
    """A parquet file opened with page checksum verification on."""
    try:
        return pq.ParquetFile(fs.open(path, "rb"), page_checksum_verification=True)
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise SourceError(f"{path}: not a readable parquet file: {short_text(exc)}") from None


def iter_parquet_rows(fs: Any, path: str, start: int, stop: int,
                      batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
    """Record batches of rows ``[start, stop)`` of a parquet file, reading only the row groups
    that hold them, with page checksums verified."""
    pf = open_parquet(fs, path)
    metadata = pf.metadata
    offset = 0
    try:
        for index in range(metadata.num_row_groups):
            rows = metadata.row_group(index).num_rows
            first, last = offset, offset + rows
            offset = last
            if last <= start or first >= stop:
                continue
            position = first
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[index],
                                         use_threads=True):
                lo, hi = max(start - position, 0), min(stop - position, batch.num_rows)
                position += batch.num_rows
                if hi > lo:
                    yield batch.slice(lo, hi - lo)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise SourceError(f"{path}: cannot read rows {start}-{stop}: {short_text(exc)}") from None


def first_parquet_rows(fs: Any, path: str, start: int, rows: int) -> pa.Table:
    """Rows ``[start, start + rows)`` of a parquet file: its footer, then only the row groups
    holding them (ranged reads, page checksums verified); at most :data:`PREVIEW_MAX_BYTES`."""
    pf = open_parquet(fs, path)
    tables: list[pa.Table] = []
    wanted, offset, budget = rows, 0, PREVIEW_MAX_BYTES
    try:
        metadata = pf.metadata
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            first, offset = offset, offset + group.num_rows
            if offset <= start or not group.num_rows:
                continue
            size = sum(group.column(j).total_compressed_size for j in range(group.num_columns))
            if size > budget and not tables:
                raise NotSupportedError(
                    f"{path}: the row group holding its first rows is {size:,} bytes, more than "
                    f"a preview reads ({PREVIEW_MAX_BYTES:,}); download one partition to see "
                    "its rows")
            if size > budget:
                break
            budget -= size
            table = pf.read_row_group(index).slice(max(start - first, 0), wanted)
            tables.append(table)
            wanted -= table.num_rows
            if wanted <= 0:
                break
        schema = pf.schema_arrow
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise SourceError(f"{path}: cannot read its first rows: {short_text(exc)}") from None
    finally:
        pf.close()
    return pa.concat_tables(tables) if tables else schema.empty_table()


def first_text_rows(fs: Any, path: str, fmt: str, compression: str | None, rows: int,
                    schema: pa.Schema, options: dict[str, Any], *, start: int = 0,
                    stop: int | None = None, columns: list[str] | None = None,
                    fill_missing: bool = False, stream: bool = False) -> pa.Table:
    """The first ``rows`` rows of the lines starting in ``[start, stop)`` of a CSV / JSON Lines
    file, typed as ``schema`` (columns by name), reading at most :data:`PREVIEW_TEXT_BYTES`
    (whole lines). Arguments as :func:`iter_text_batches`."""
    end = start + PREVIEW_TEXT_BYTES if stop is None else min(stop, start + PREVIEW_TEXT_BYTES)
    batches: list[pa.RecordBatch] = []
    found = 0
    reader = iter_text_batches(fs, path, fmt, compression, start, end, schema, options,
                               columns=columns, fill_missing=fill_missing, stream=stream)
    try:
        for batch in reader:
            batches.append(batch)
            found += batch.num_rows
            if found >= rows:
                break
    finally:
        reader.close()
    return pa.Table.from_batches(batches, schema=schema).slice(0, rows)


def plan_parquet_slices(metadata: pq.FileMetaData,
                        partition_size: int) -> list[tuple[int, int, int]]:
    """Cut a parquet file into row ranges of about ``partition_size`` bytes: (start, stop, bytes).

    Ranges follow row-group boundaries; a row group larger than the target is cut by rows.
    """
    slices: list[tuple[int, int, int]] = []
    start = offset = 0
    pending = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        rows, size = group.num_rows, max(group.total_byte_size, 1)
        if pending and pending + size > partition_size:
            slices.append((start, offset, pending))
            start, pending = offset, 0
        if size > partition_size and rows > 1:
            pieces = math.ceil(size / partition_size)
            step = math.ceil(rows / pieces)
            for lo in range(0, rows, step):
                hi = min(lo + step, rows)
                slices.append((offset + lo, offset + hi, size * (hi - lo) // rows))
            offset += rows
            start = offset
            continue
        pending += size
        offset += rows
    if pending or not slices:
        slices.append((start, offset, pending))
    return slices


@dataclass
class WrittenPartition:
    """What a finished partition file holds."""

    num_rows: int
    row_groups: list[int]
    schema: pa.Schema


class PartitionWriter:
    """Writes record batches to a local parquet file in row groups of bounded rows and bytes.

    Columns are matched to ``schema`` by name (never by position); with ``fill_missing`` a
    column the batch lacks becomes nulls (``schema="union"``). Pages carry CRC checksums, and
    ``provenance`` is stored in the footer's key-value metadata under ``pygestor``.
    """

    def __init__(self, dest: str, schema: pa.Schema | None, row_group_size: int,
                 compression: str, *, provenance: dict[str, Any] | None = None,
                 fill_missing: bool = False) -> None:
        self.dest = dest
        self.schema = schema
        self.row_group_size = row_group_size
        self.compression = compression
        self.provenance = provenance
        self.fill_missing = fill_missing
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_rows = 0
        self._buffered_bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self.schema is None:
            self.schema = batch.schema
        elif batch.schema != self.schema:
            batch = conform(batch, self.schema, fill_missing=self.fill_missing)
        self._buffer.append(batch)
        self._buffered_rows += batch.num_rows
        self._buffered_bytes += batch.nbytes
        while self._buffered_rows >= self.row_group_size or \
                self._buffered_bytes >= ROW_GROUP_MAX_BYTES:
            self._flush(limit=self.row_group_size)

    def _flush(self, limit: int | None = None) -> None:
        if not self._buffer:
            return
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        if limit is not None and table.num_rows > limit:
            head, rest = table.slice(0, limit), table.slice(limit)
        else:
            head, rest = table, None
        self._open().write_table(head, row_group_size=max(head.num_rows, 1))
        self._buffer = rest.to_batches() if rest is not None and rest.num_rows else []
        self._buffered_rows = rest.num_rows if rest is not None else 0
        self._buffered_bytes = rest.nbytes if rest is not None else 0

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            assert self.schema is not None
            self._writer = pq.ParquetWriter(self.dest, self.schema, compression=self.compression,
                                            write_page_checksum=True,
                                            write_statistics=True)
        return self._writer

    def close(self) -> WrittenPartition:
        self._flush()
        if self._writer is None:  # no rows: still a valid, empty partition
            if self.schema is None:
                raise SourceError(f"no rows and no schema for {self.dest}")
            self._open()
        assert self._writer is not None
        if self.provenance is not None:
            self._writer.add_key_value_metadata(
                {PROVENANCE_KEY: json.dumps(self.provenance, sort_keys=True, default=str)})
        self._writer.close()
        metadata = pq.read_metadata(self.dest)
        return WrittenPartition(
            num_rows=metadata.num_rows,
            row_groups=[metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)],
            schema=self.schema)

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001, S110 - the file is discarded anyway
                pass


def read_provenance(metadata: pq.FileMetaData) -> dict[str, Any] | None:
    """The provenance a partition file carries in its footer, or None (not written by
    Pygestor, or unreadable)."""
    raw = (metadata.metadata or {}).get(PROVENANCE_KEY.encode())
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def conform(batch: Any, schema: pa.Schema, *, fill_missing: bool = False) -> Any:
    """``batch`` (a RecordBatch or Table) with the columns of ``schema``, matched by name and
    cast to its types.

    A cast that would lose information (an overflow, a value that does not parse) is an error,
    and so is a column ``schema`` lacks; a column the batch lacks is an error unless
    ``fill_missing`` (then nulls).
    """
    extra = [name for name in batch.schema.names if schema.get_field_index(name) < 0]
    missing = [f.name for f in schema if batch.schema.get_field_index(f.name) < 0]
    if batch.schema.equals(schema):
        return batch
    if extra or (missing and not fill_missing):
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(map(repr, missing[:10]))}")
        if extra:
            parts.append(f"has {', '.join(map(repr, extra[:10]))} in addition")
        raise SourceError(f"rows do not match the subset's columns: the data {' and '.join(parts)}"
                          "; add the files as separate subsets, or register the dataset with "
                          "schema='union'")
    arrays = []
    for field in schema:
        if field.name in missing:
            arrays.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SourceError(f"column {field.name!r} cannot be stored as {field.type}: "
                                  f"{short_text(exc)}") from None
        arrays.append(column)
    if isinstance(batch, pa.Table):
        return pa.Table.from_arrays(arrays, schema=schema)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
