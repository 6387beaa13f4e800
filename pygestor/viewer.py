"""Every row of a downloaded subset, a page at a time: paging, sorting and filtering.

Pages. The catalog records every partition's row-group row counts, so the row group holding
global row ``r`` is found by a binary search over their cumulative sums: no file is opened to
find it. Only the row groups holding a page are read, each one whole and verified (footer, page
checksums, row count) through :class:`~pygestor.loaders.stream.RowGroupReader`; the last ones
read are kept, up to :data:`CACHE_BYTES`.

Queries (filter-builder conditions, a SQL ``WHERE`` condition, a sort) run in DuckDB over the
subset's rows as Arrow record batches that the same verified reader produces: only the columns
the query names, plus each row's number. DuckDB never sees a file or the network: external
access is disabled, extensions are neither installed nor loaded, nothing spills to disk, the
configuration is locked, and each query runs on a fresh in-memory connection with a memory
limit, a thread limit and a time limit. A query returns the numbers of the matching rows in
order (the first :data:`MAX_MATCHES`, and how many match in all); its pages are then read like
plain pages.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pygestor.errors import ConfigError, PygestorError, QueryError, short_text

if TYPE_CHECKING:
    from pygestor.manager import Manager

#: the column that carries each row's number into a query (never shown)
ROW_COLUMN = "__pygestor_row"
#: DuckDB's memory limit per query
QUERY_MEMORY = "512MB"
#: DuckDB threads per query
QUERY_THREADS = 2
#: seconds before a query is interrupted
QUERY_SECONDS = 30.0
#: row numbers a query result keeps (how many match is always counted in full)
MAX_MATCHES = 1_000_000
#: bytes of row groups a viewer keeps in memory (at least the last one read)
CACHE_BYTES = 64 << 20
#: longest SQL condition accepted
MAX_WHERE = 4000
#: the filter builder's operators: name -> SQL template (``{c}`` column, ``{t}`` its type)
OPERATORS: dict[str, str] = {
    "=": "{c} = CAST(? AS {t})",
    "!=": "{c} <> CAST(? AS {t})",
    "<": "{c} < CAST(? AS {t})",
    "<=": "{c} <= CAST(? AS {t})",
    ">": "{c} > CAST(? AS {t})",
    ">=": "{c} >= CAST(? AS {t})",
    "contains": "contains(lower(CAST({c} AS VARCHAR)), lower(?))",
    "starts with": "starts_with(CAST({c} AS VARCHAR), ?)",
    "is null": "{c} IS NULL",
    "is not null": "{c} IS NOT NULL",
}
UNARY = ("is null", "is not null")
#: keywords that make a WHERE condition a query of its own
_STATEMENT_WORDS = {"select", "from", "with", "union", "pragma", "copy", "attach", "detach",
                    "install", "load", "set", "reset", "call", "create", "insert", "update",
                    "delete", "drop", "alter", "export", "import", "checkpoint", "vacuum"}


@dataclass(frozen=True)
class Condition:
    """One filter-builder condition: ``column op value`` (value as typed: DuckDB casts it to
    the column's type; none for ``is null`` / ``is not null``)."""

    column: str
    op: str
    value: str | None = None


@dataclass(frozen=True)
class RowQuery:
    """What to show: rows passing every condition and the SQL ``where`` condition, sorted by
    ``sort`` (None: stored order)."""

    conditions: tuple[Condition, ...] = ()
    where: str = ""
    sort: str | None = None
    descending: bool = False

    @property
    def empty(self) -> bool:
        return not self.conditions and not self.where.strip() and self.sort is None


@dataclass
class QueryResult:
    """Row numbers of the matching rows in result order (the first :data:`MAX_MATCHES`), and
    how many rows match in all."""

    rows: np.ndarray
    matches: int
    seconds: float

    @property
    def capped(self) -> bool:
        return self.matches > len(self.rows)


class RowViewer:
    """The downloaded rows of one subset, for pages and queries; thread-safe.

    Args:
        manager: the storage root and catalog.
        ref: a subset reference (``dataset/subset``).
        cache_bytes: bytes of row groups kept in memory.
    """

    def __init__(self, manager: Manager, ref: str, cache_bytes: int = CACHE_BYTES) -> None:
        from pygestor.loaders.stream import RowGroupReader

        self.ref = ref
        self.source = manager.select(ref)
        self._reader = RowGroupReader(self.source)
        self.schema: pa.Schema = self._reader.schema()
        sizes = self.source.row_group_sizes
        self.offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._lock = threading.Lock()

    @property
    def num_rows(self) -> int:
        return int(self.offsets[-1])

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._reader.close()

    # ------------------------------------------------------------------ pages
    def page(self, page: int, per_page: int, result: QueryResult | None = None
             ) -> tuple[np.ndarray, pa.Table]:
        """Row numbers and rows of page ``page`` (from 0) in stored order, or of ``result``."""
        if page < 0 or per_page < 1:
            raise ConfigError(f"no page {page} of {per_page} rows; pages count from 0")
        start = page * per_page
        if result is not None:
            ids = result.rows[start:start + per_page]
        else:
            ids = np.arange(start, min(start + per_page, self.num_rows), dtype=np.int64)
        return ids, self.take(ids)

    def take(self, ids: np.ndarray) -> pa.Table:
        """The rows with global numbers ``ids``, in that order."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.num_rows):
            raise ConfigError(f"row numbers must lie in [0, {self.num_rows})")
        groups = np.searchsorted(self.offsets, ids, side="right") - 1
        pieces: list[pa.Table] = []
        positions: list[np.ndarray] = []
        for group in dict.fromkeys(groups.tolist()):
            where = np.flatnonzero(groups == group)
            table = self._row_group(group)
            pieces.append(table.take(pa.array(ids[where] - self.offsets[group])))
            positions.append(where)
        if not pieces:
            return self.schema.empty_table()
        rows = pa.concat_tables(pieces)
        order = np.argsort(np.concatenate(positions), kind="stable")
        return rows.take(pa.array(order))

    def _row_group(self, group: int) -> pa.Table:
        with self._lock:
            table = self._cache.get(group)
            if table is not None:
                self._cache.move_to_end(group)
                return table
            table = self._reader.read(*self.source.locate(group))
            self._cache[group] = table
            while len(self._cache) > 1 and \
                    sum(t.nbytes for t in self._cache.values()) > self._cache_bytes:
                self._cache.popitem(last=False)
            return table

    # ------------------------------------------------------------------ queries
    def query(self, query: RowQuery, *, seconds: float = QUERY_SECONDS) -> QueryResult:
        """Run ``query`` in DuckDB over this subset's rows (see the module's docstring)."""
        started = time.monotonic()
        columns = columns_used(query, self.schema)
        failure: list[BaseException] = []
        batches = self._scan(columns, failure)
        connection = _connect()
        timer = threading.Timer(seconds, connection.interrupt)
        try:
            types = _duckdb_types(connection, self.schema, columns)
            _check_values(connection, query, types)
            sql, params = build_sql(query, types)
            stream = pa.RecordBatchReader.from_batches(_scan_schema(self.schema, columns),
                                                       batches)
            connection.register("data", stream)
            timer.start()
            rows, matches = _collect(connection.sql(sql, params=params))
        except PygestorError:
            raise
        except Exception as exc:  # noqa: BLE001 - DuckDB's errors become one clear message
            if failure:  # the verified reader refused a row group: say that, not DuckDB's echo
                raise failure[0] from None
            raise _query_error(exc, seconds) from None
        finally:
            timer.cancel()
            batches.close()
            connection.close()
        return QueryResult(rows, matches, time.monotonic() - started)

    def _scan(self, columns: list[str], failure: list[BaseException]
              ) -> Iterator[pa.RecordBatch]:
        """The subset's row groups (``columns`` and each row's number), read verified with
        read-ahead; an error is kept in ``failure`` before it reaches DuckDB."""
        from pygestor.loaders.prefetch import default_depth, prefetch
        from pygestor.loaders.stream import RowGroupReader

        reader = RowGroupReader(self.source, columns)
        sizes = self.source.row_group_sizes
        groups = [g for g in range(len(sizes)) if sizes[g]]

        def read(group: int) -> pa.Table:
            table = reader.read(*self.source.locate(group))
            numbers = np.arange(self.offsets[group], self.offsets[group + 1], dtype=np.int64)
            return table.append_column(ROW_COLUMN, pa.array(numbers))

        try:
            for table in prefetch(read, groups, default_depth(self.source)):
                yield from table.to_batches()
        except Exception as exc:
            failure.append(exc)
            raise
        finally:
            reader.close()


# ============================================================================================
# Building the query


def quote(name: str) -> str:
    """A SQL identifier for any column name."""
    return '"' + name.replace('"', '""') + '"'


def check_where(where: str) -> list[str]:
    """The words of a SQL ``WHERE`` condition, refused unless it is one condition: no ``;``,
    no comment, balanced parentheses, no statement of its own (``SELECT``, ``COPY``...)."""
    import duckdb

    if len(where) > MAX_WHERE:
        raise QueryError(f"the SQL condition is {len(where)} characters long; at most "
                         f"{MAX_WHERE} are accepted")
    try:
        tokens = duckdb.tokenize(where)
    except Exception as exc:  # noqa: BLE001 - shown as a clear message
        raise QueryError(f"the SQL condition cannot be read: {short_text(exc)}") from None
    ends = [position for position, _ in tokens[1:]] + [len(where)]
    words, depth = [], 0
    for (start, kind), end in zip(tokens, ends, strict=True):
        text, kind_name = where[start:end].strip(), str(kind).rsplit(".", 1)[-1]
        if kind_name == "comment":
            raise QueryError("the SQL condition may not hold comments (-- or /* */)")
        if kind_name == "operator":
            if ";" in text:
                raise QueryError("the SQL condition is one condition on the columns, e.g. "
                                 "label = 'cat' AND score > 0.5; ';' is not allowed")
            for char in text:
                depth += {"(": 1, ")": -1}.get(char, 0)
                if depth < 0:
                    raise QueryError("the SQL condition closes a parenthesis it did not open")
        if kind_name == "keyword" and text.lower() in _STATEMENT_WORDS:
            raise QueryError(f"the SQL condition is a condition on the columns, not a query: "
                             f"{text.upper()} is not allowed (write e.g. label = 'cat')")
        if kind_name in ("identifier", "keyword"):
            words.append(text[1:-1].replace('""', '"') if text.startswith('"') else text)
    if depth:
        raise QueryError("the SQL condition leaves a parenthesis open")
    return words


def columns_used(query: RowQuery, schema: pa.Schema) -> list[str]:
    """The columns a query reads (in schema order): those its conditions and sort name, and
    any column whose name appears as a word of its SQL condition."""
    named = {c.column for c in query.conditions} | ({query.sort} if query.sort else set())
    unknown = sorted(n for n in named if n not in schema.names)
    if unknown:
        raise QueryError(f"no column {unknown[0]!r} in this subset; columns: "
                         f"{', '.join(schema.names)}")
    words = {w.lower() for w in check_where(query.where)} if query.where.strip() else set()
    return [n for n in schema.names if n in named or n.lower() in words]


def build_sql(query: RowQuery, types: dict[str, str]) -> tuple[str, list[Any]]:
    """The SQL of a query over the registered ``data`` and its parameters (values typed in
    the filter builder are parameters, never SQL text)."""
    parts: list[str] = []
    params: list[Any] = []
    for condition in query.conditions:
        template = OPERATORS.get(condition.op)
        if template is None:
            raise QueryError(f"unknown operator {condition.op!r}; use one of "
                             f"{', '.join(OPERATORS)}")
        if condition.op not in UNARY:
            if condition.value is None or condition.value == "":
                raise QueryError(f"give a value to compare {condition.column!r} with")
            params.append(condition.value)
        parts.append(template.format(c=quote(condition.column), t=types[condition.column]))
    if query.where.strip():
        parts.append(f"(\n{query.where}\n)")
    sql = f"SELECT {quote(ROW_COLUMN)} FROM data"  # noqa: S608 - values are parameters
    if parts:
        sql += " WHERE " + " AND ".join(parts)
    if query.sort:
        direction = "DESC" if query.descending else "ASC"
        sql += f" ORDER BY {quote(query.sort)} {direction} NULLS LAST, {quote(ROW_COLUMN)}"
    return sql, params


# ============================================================================================
# Running it


def _connect() -> Any:
    """A fresh in-memory DuckDB connection that can reach no file, network or extension."""
    try:
        import duckdb
    except ImportError:
        raise ConfigError("sorting and filtering rows need duckdb: pip install "
                          "'pygestor[ui]'") from None
    return duckdb.connect(":memory:", config={
        "enable_external_access": False, "autoinstall_known_extensions": False,
        "autoload_known_extensions": False, "temp_directory": "",
        "memory_limit": QUERY_MEMORY, "threads": QUERY_THREADS, "lock_configuration": True})


def _scan_schema(schema: pa.Schema, columns: list[str]) -> pa.Schema:
    return pa.schema([*(schema.field(c) for c in columns), pa.field(ROW_COLUMN, pa.int64())])


def _duckdb_types(connection: Any, schema: pa.Schema, columns: list[str]) -> dict[str, str]:
    """DuckDB's type of each column read (what the filter builder casts values to)."""
    connection.register("columns_of_data", _scan_schema(schema, columns).empty_table())
    relation = connection.sql("SELECT * FROM columns_of_data")
    types = {name: str(kind) for name, kind in zip(relation.columns, relation.types,
                                                   strict=True)}
    connection.unregister("columns_of_data")
    return types


def _check_values(connection: Any, query: RowQuery, types: dict[str, str]) -> None:
    """Refuse a filter-builder value that does not read as its column's type."""
    for condition in query.conditions:
        if condition.op in UNARY or not condition.value or "CAST(?" not in \
                OPERATORS.get(condition.op, ""):
            continue
        kind = types[condition.column]
        [(failed,)] = connection.sql(f"SELECT TRY_CAST(? AS {kind}) IS NULL",
                                     params=[condition.value]).fetchall()
        if failed:
            raise QueryError(f"{condition.value!r} is not a value of column "
                             f"{condition.column!r} ({kind})")


def _collect(result: Any) -> tuple[np.ndarray, int]:
    """The first :data:`MAX_MATCHES` row numbers of a result, and how many rows it has."""
    kept: list[np.ndarray] = []
    have = matches = 0
    reader = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch  # 2.x, 1.x
    for batch in reader(1 << 16):
        matches += batch.num_rows
        if have < MAX_MATCHES:
            numbers = batch.column(0).to_numpy()[:MAX_MATCHES - have]
            kept.append(numbers)
            have += len(numbers)
    rows = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return rows.astype(np.int64, copy=False), matches


def _query_error(exc: BaseException, seconds: float) -> QueryError:
    kind = type(exc).__name__
    if kind == "InterruptException":
        return QueryError(f"the query ran longer than {seconds:g} s and was stopped; narrow it "
                          "with a filter")
    if kind == "OutOfMemoryException":
        return QueryError(f"the query needs more than {QUERY_MEMORY} of memory; narrow it with "
                          "a filter, or sort a smaller subset")
    text = short_text(exc, limit=400).replace(ROW_COLUMN, "row number")
    return QueryError(f"the query cannot run: {text}")

