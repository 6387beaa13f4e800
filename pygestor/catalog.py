"""Dataset, subset and partition records and their ``metadata.json`` files.

One record per dataset, at ``<data_dir>/<dataset>/metadata.json``: writers of different datasets
never contend, and a crash can damage at most one record (and, since every write is atomic, it
does not). Updates go through :meth:`Catalog.update`, a locked read-modify-write, so concurrent
writers of one dataset do not lose each other's changes.
"""

from __future__ import annotations

import difflib
import gc
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from pygestor.backends.storage import Storage
from pygestor.errors import (
    AlreadyExistsError,
    AmbiguousReferenceError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    short_text,
)
from pygestor.names import check_dataset_name, check_reference, check_subset_name

SCHEMA_VERSION = 1
RECORD_NAME = "metadata.json"
#: records larger than this are refused before they are parsed (a 100 000-partition record is
#: about 40 MB)
MAX_RECORD_BYTES = 512 << 20
T = TypeVar("T")


def dumps_json(data: Any) -> bytes:
    """Compact JSON (orjson when installed: ten times faster on large records)."""
    try:
        import orjson
    except ImportError:
        return json.dumps(data, separators=(",", ":")).encode()
    return orjson.dumps(data)


def loads_json(raw: bytes) -> Any:
    """Parse JSON with the cyclic garbage collector paused (it halves the time on big records)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            import orjson
        except ImportError:
            return json.loads(raw)
        return orjson.loads(raw)
    finally:
        if enabled:
            gc.enable()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Partition:
    """One bounded-size parquet file of a subset.

    Plan (known when the dataset is added):
        name: file name inside the subset folder (``part-00000.parquet``).
        source: what the pipeline needs to fetch it (URL, format, slice...).
        source_bytes, source_rows: expected size of the source slice, when known.
    Stored state (filled when downloaded; ``checksum`` set means downloaded):
        size, num_rows, row_groups (rows per row group), checksum (``sha256:<hex>`` of the
        file), footer ([offset, length] of the parquet footer), footer_checksum (``sha256`` of
        those bytes: every reader checks the footer it parses against it), etag (the object
        store's entity tag of the placed object, when the store gives one), downloaded_at.
    """

    #: the fields that describe the stored file (copied together, cleared together)
    STORED: ClassVar[tuple[str, ...]] = ("size", "num_rows", "row_groups", "checksum", "footer",
                                         "footer_checksum", "etag", "downloaded_at")

    name: str
    source: dict[str, Any] = field(default_factory=dict)
    source_bytes: int | None = None
    source_rows: int | None = None
    size: int | None = None
    num_rows: int | None = None
    row_groups: list[int] | None = None
    checksum: str | None = None
    footer: list[int] | None = None
    footer_checksum: str | None = None
    etag: str | None = None
    downloaded_at: str | None = None
    #: how many times the partition was removed: a download records its file only if no
    #: remove happened since it read the record (a remove may have deleted what it placed)
    generation: int | None = None

    @property
    def downloaded(self) -> bool:
        return self.checksum is not None

    def mark_removed(self) -> None:
        for key in self.STORED:
            setattr(self, key, None)
        self.generation = (self.generation or 0) + 1

    def copy_stored(self, other: Partition) -> None:
        """Take ``other``'s stored state (the file it describes is this partition's)."""
        for key in self.STORED:
            setattr(self, key, getattr(other, key))

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v is not None and v != {}}
        data["name"] = self.name
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partition:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Subset:
    """A version, language, config or split of a dataset: an ordered list of partitions.

    Partition records are parsed lazily: a catalog of 100 000 partitions is read, summarized
    and written back without building an object per partition of the untouched subsets.
    """

    def __init__(self, name: str, partitions: list[Partition] | None = None,
                 description: str = "", schema: str | None = None,
                 extra: dict[str, Any] | None = None,
                 raw_partitions: list[dict[str, Any]] | None = None) -> None:
        self.name = name
        self.description = description
        self.schema = schema  # base64 Arrow IPC schema, when known
        self.extra = extra or {}
        self._partitions = partitions if partitions is not None else (
            None if raw_partitions is not None else [])
        self._raw = raw_partitions

    def __repr__(self) -> str:
        return f"Subset({self.name!r}, {self.count} partitions)"

    @property
    def partitions(self) -> list[Partition]:
        if self._partitions is None:
            self._partitions = [Partition.from_dict(p) for p in self._raw or []]
            self._raw = None
        return self._partitions

    @partitions.setter
    def partitions(self, value: list[Partition]) -> None:
        self._partitions, self._raw = value, None

    @property
    def count(self) -> int:
        return len(self._partitions) if self._partitions is not None else len(self._raw or [])

    def partition(self, name: str) -> Partition:
        for part in self.partitions:
            if part.name == name:
                return part
        raise NotFoundError(_missing("partition", name, [p.name for p in self.partitions],
                                     f"subset {self.name!r}"))

    @property
    def downloaded(self) -> list[Partition]:
        return [p for p in self.partitions if p.downloaded]

    def stats(self) -> dict[str, Any]:
        """Counts and sizes, without building partition objects when they are not built yet."""
        items = self._raw if self._partitions is None else [p.__dict__ for p in self.partitions]
        downloaded = rows = size = source = 0
        rows_known = True
        for item in items or []:
            if item.get("checksum") is not None:
                downloaded += 1
                size += item.get("size") or 0
            count = item.get("num_rows")
            count = item.get("source_rows") if count is None else count
            if count is None:
                rows_known = False
            else:
                rows += count
            source += item.get("source_bytes") or 0
        return {"partitions": len(items or []), "downloaded": downloaded,
                "rows": rows if rows_known else None, "downloaded_bytes": size,
                "source_bytes": source}

    @property
    def num_rows(self) -> int | None:
        """Rows of the whole subset, if every partition's count is known."""
        return self.stats()["rows"]

    def to_dict(self) -> dict[str, Any]:
        partitions = self._raw if self._partitions is None else \
            [p.to_dict() for p in self._partitions]
        data: dict[str, Any] = {"name": self.name, "partitions": partitions or []}
        if self.description:
            data["description"] = self.description
        if self.schema:
            data["schema"] = self.schema
        if self.extra:
            data["extra"] = self.extra
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Subset:
        return cls(name=data["name"], raw_partitions=data.get("partitions", []),
                   description=data.get("description", ""), schema=data.get("schema"),
                   extra=data.get("extra", {}))


@dataclass
class Dataset:
    """One registered dataset: where it came from and what it holds."""

    name: str
    url: str | None = None
    pipeline: str = "files"
    options: dict[str, Any] = field(default_factory=dict)
    subsets: dict[str, Subset] = field(default_factory=dict)
    revision: str | None = None
    description: str = ""
    modality: str = ""
    license: str = ""
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    #: this registration's identity (a new one at every ``add``; empty in older records)
    uid: str = ""

    def subset(self, name: str) -> Subset:
        try:
            return self.subsets[name]
        except KeyError:
            raise NotFoundError(_missing("subset", name, list(self.subsets),
                                         f"dataset {self.name!r}")) from None

    @property
    def partitions(self) -> Iterable[tuple[Subset, Partition]]:
        for subset in self.subsets.values():
            for part in subset.partitions:
                yield subset, part

    def only(self, subset: Subset, part: Partition) -> Dataset:
        """A copy of this record holding one subset with one partition (what a task on a
        cluster needs to fetch it, without the whole catalog of a large dataset)."""
        one = Subset(name=subset.name, partitions=[part], description=subset.description,
                     schema=subset.schema, extra=subset.extra)
        return Dataset(name=self.name, url=self.url, pipeline=self.pipeline,
                       options=self.options, subsets={one.name: one}, revision=self.revision,
                       description=self.description, modality=self.modality,
                       license=self.license, created_at=self.created_at,
                       updated_at=self.updated_at, extra=self.extra,
                       schema_version=self.schema_version, uid=self.uid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version, "name": self.name, "url": self.url,
            "pipeline": self.pipeline, "options": self.options, "revision": self.revision,
            "description": self.description, "modality": self.modality,
            "license": self.license, "created_at": self.created_at,
            "updated_at": self.updated_at, "extra": self.extra, "uid": self.uid,
            "subsets": [s.to_dict() for s in self.subsets.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dataset:
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise IntegrityError(f"record of {data.get('name')!r} has schema version "
                                 f"{version!r}; this Pygestor reads up to {SCHEMA_VERSION}: "
                                 "upgrade pygestor")
        name = data.get("name")
        if not isinstance(name, str):
            raise IntegrityError(f"record names no dataset (name={name!r})")
        check_dataset_name(name)
        raw_subsets = data.get("subsets", [])
        if not isinstance(raw_subsets, list) or not all(
                isinstance(s, dict) and isinstance(s.get("partitions", []), list)
                for s in raw_subsets):
            raise IntegrityError(f"record of {name!r} has a malformed subset list")
        subsets = [Subset.from_dict(s) for s in raw_subsets]
        for subset in subsets:
            check_subset_name(subset.name)
        return cls(name=name, url=data.get("url"), pipeline=data.get("pipeline", "files"),
                   options=data.get("options", {}), subsets={s.name: s for s in subsets},
                   revision=data.get("revision"), description=data.get("description", ""),
                   modality=data.get("modality", ""), license=data.get("license", ""),
                   created_at=data.get("created_at", now()),
                   updated_at=data.get("updated_at", now()), extra=data.get("extra", {}),
                   schema_version=version, uid=str(data.get("uid") or ""))

    def to_json(self) -> bytes:
        return dumps_json(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes, where: str = "record") -> Dataset:
        try:
            data = loads_json(raw)
        except ValueError as exc:
            raise IntegrityError(f"{where} is not valid JSON ({exc}); restore it or delete the "
                                 "dataset and add it again") from None
        if not isinstance(data, dict) or "name" not in data:
            raise IntegrityError(f"{where} is not a Pygestor dataset record")
        try:
            return cls.from_dict(data)
        except InvalidNameError as exc:
            raise IntegrityError(f"{where} holds an invalid name ({exc}); it was damaged or "
                                 "tampered with: restore it, or run 'pygestor verify NAME "
                                 "--repair' to rebuild it from its partition files") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IntegrityError(f"{where} is malformed ({type(exc).__name__}: {exc}); restore it "
                                 "or run 'pygestor verify NAME --repair'") from None


@dataclass(frozen=True)
class Reference:
    """A resolved reference: a dataset, optionally one subset, optionally one partition."""

    dataset: str
    subset: str | None = None
    partition: str | None = None
    #: the record read while resolving, so the caller need not read (and parse) it again
    record: Dataset | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return "/".join(p for p in (self.dataset, self.subset, self.partition) if p)


class Catalog:
    """All dataset records under one storage root."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def record_path(self, name: str) -> str:
        return self.storage.path(check_dataset_name(name), RECORD_NAME)

    # ------------------------------------------------------------------ listing
    def _listing(self) -> dict[str, int]:
        """Every record in the root: dataset name -> record size (one listing per depth)."""
        self.storage.check_root()
        root = self.storage.root.rstrip("/")
        found: dict[str, int] = {}
        for pattern in (f"{root}/*/{RECORD_NAME}", f"{root}/*/*/{RECORD_NAME}"):
            for path, detail in self.storage.glob_detail(pattern).items():
                rel = path[len(root):].strip("/") if path.startswith(root) else path
                found[rel[: -len(RECORD_NAME) - 1]] = int(detail.get("size") or 0)
        return dict(sorted(found.items()))

    def names(self) -> list[str]:
        """Names of every registered dataset (one- and two-part names)."""
        return list(self._listing())

    def scan(self) -> tuple[list[Dataset], dict[str, str]]:
        """Every record that can be read, and the names of those that cannot, with the reason.

        One damaged record (truncated, tampered, too large, from a newer Pygestor) never hides
        the others.
        """
        listing = self._listing()
        damaged: dict[str, str] = {}
        wanted: dict[str, str] = {}
        for name, size in listing.items():
            try:
                check_dataset_name(name)
            except InvalidNameError as exc:
                damaged[name] = str(exc)
                continue
            if size > MAX_RECORD_BYTES:
                damaged[name] = _too_large(size)
                continue
            wanted[name] = self.record_path(name)
        raw = self.storage.read_many(list(wanted.values()))
        records = []
        for name, path in wanted.items():
            value = raw.get(path)
            if value is None:
                # some filesystems key results by their own spelling of the path
                value = next((v for k, v in raw.items() if k.endswith(path.lstrip("/"))), None)
            if isinstance(value, FileNotFoundError) or value is None:
                continue  # deleted while listing
            if isinstance(value, Exception):
                damaged[name] = f"cannot be read: {short_text(value)}"
                continue
            try:
                records.append(self._parse(name, value, path))
            except IntegrityError as exc:
                damaged[name] = str(exc)
        return records, damaged

    def exists(self, name: str) -> bool:
        return self.storage.exists(self.record_path(name))

    def read(self, name: str) -> Dataset:
        record = self._read_if_exists(name)
        if record is None:
            raise NotFoundError(self._unknown_dataset(name))
        return record

    def _parse(self, name: str, raw: bytes, path: str) -> Dataset:
        """A record read from ``path``, checked like user input: size, JSON, names, and the name
        it gives itself must be the folder it was found in."""
        where = f"record {self.storage.url_of(path)}"
        if len(raw) > MAX_RECORD_BYTES:
            raise IntegrityError(f"{where} is {_too_large(len(raw))}")
        record = Dataset.from_json(raw, where=where)
        if record.name != name:
            raise IntegrityError(f"{where} says it is dataset {record.name!r}, but it lies in the "
                                 f"folder of {name!r}; it was moved or tampered with: restore "
                                 f"it, or delete it with 'pygestor delete {name}'")
        return record

    # ------------------------------------------------------------------ writing
    def write(self, dataset: Dataset) -> None:
        """Replace a record as it is (no merge with a concurrent change: see :meth:`update`)."""
        dataset.updated_at = now()
        self.storage.write_bytes(self.record_path(dataset.name), dataset.to_json())

    def create(self, dataset: Dataset) -> None:
        """Write a new record; an error if the name is taken (also by a concurrent add)."""
        check_dataset_name(dataset.name)
        self.storage.check_root()
        dataset.updated_at = now()
        try:
            self.storage.create_bytes(self.record_path(dataset.name), dataset.to_json())
        except FileExistsError:
            raise AlreadyExistsError(f"dataset {dataset.name!r} is already registered; pick "
                                     "another name or delete it first") from None

    def update(self, name: str, change: Callable[[Dataset], T],
               after: Callable[[], None] | None = None) -> T:
        """Apply ``change`` to the latest record and save it, losing no concurrent update.

        How depends on the storage (:meth:`~pygestor.backends.storage.Storage.transact`): under
        a lock, or compare-and-swap, in which case ``change`` runs again on the winner's record
        after a conflict (so it must only change the record it is given, and compute its
        result from it). ``after`` runs once the record is saved (e.g. deleting the files the
        change marked removed).
        """
        path = self.record_path(name)
        results: list[T] = []

        def apply(raw: bytes | None) -> bytes:
            if raw is None:
                raise NotFoundError(self._unknown_dataset(name))
            dataset = self._parse(name, raw, path)
            results[:] = [change(dataset)]
            dataset.updated_at = now()
            return dataset.to_json()
        self.storage.transact(path, apply, after=after)
        return results[0]

    def delete_record(self, name: str) -> None:
        self.storage.remove_record(self.record_path(name))

    # ------------------------------------------------------------------ references
    def resolve(self, ref: str) -> Reference:
        """Turn ``dataset[/subset[/partition]]`` into a :class:`Reference` (longest match first).

        Each candidate dataset name costs one read of its record (no existence check first);
        the record read is returned with the reference.
        """
        check_reference(ref)
        parts = ref.strip("/").split("/")
        for n in (2, 1):
            if len(parts) < n:
                continue
            name = "/".join(parts[:n])
            try:
                record = self._read_if_exists(name)
            except InvalidNameError:  # e.g. a 3-part prefix: not a dataset name
                continue
            if record is None:
                continue
            rest = "/".join(parts[n:])
            if not rest:
                return Reference(name, record=record)
            found = self.resolve_inside(record, rest)
            return Reference(found.dataset, found.subset, found.partition, record)
        raise NotFoundError(self._unknown_dataset(ref))

    def _read_if_exists(self, name: str) -> Dataset | None:
        self.storage.check_root()
        path = self.record_path(name)
        try:
            raw = self.storage.read_bytes(path, limit=MAX_RECORD_BYTES)
        except FileNotFoundError:
            return None
        return self._parse(name, raw, path)

    def resolve_inside(self, dataset: Dataset, rest: str) -> Reference:
        """Resolve ``subset[/partition]`` inside an already-read record (no storage access)."""
        subsets = sorted(dataset.subsets, key=len, reverse=True)
        if rest in dataset.subsets:
            return Reference(dataset.name, rest)
        for subset in subsets:
            if rest.startswith(subset + "/"):
                part = rest[len(subset) + 1:]
                dataset.subsets[subset].partition(part)
                return Reference(dataset.name, subset, part)
        prefixed = [s for s in dataset.subsets if s.startswith(rest + "/")]
        if prefixed:
            raise AmbiguousReferenceError(
                f"{dataset.name}/{rest!r} matches {len(prefixed)} subsets: "
                f"{', '.join(prefixed[:8])}; name one of them")
        raise NotFoundError(_missing("subset", rest, list(dataset.subsets),
                                     f"dataset {dataset.name!r}"))

    def _unknown_dataset(self, name: str) -> str:
        try:
            names = self.names()
        except Exception:  # noqa: BLE001 - the message is still useful without suggestions
            names = []
        return _missing("dataset", name, names, "the catalog")


def _too_large(size: int) -> str:
    return (f"{size} bytes, above the {MAX_RECORD_BYTES}-byte limit for a record; it is not "
            "read (restore it, or delete the dataset)")


def _missing(kind: str, name: str, candidates: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    shown = name if len(name) <= 80 else name[:77] + "..."
    message = f"no {kind} {shown!r} in {where}"
    if close:
        return f"{message}; did you mean {', '.join(repr(c) for c in close)}?"
    if candidates:
        listed = ", ".join(repr(c) for c in candidates[:10])
        more = f" and {len(candidates) - 10} more" if len(candidates) > 10 else ""
        return f"{message}; it has {listed}{more}"
    return f"{message}; it is empty" + ("" if kind != "dataset" else " (add one with "
                                          "'pygestor add NAME URL')")
