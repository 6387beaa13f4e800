"""Presentation helpers for the web UI: sizes, times, schemas, sample cells, chart options.

Pure functions of what the operations layer returns; no NiceGUI, no I/O, no decisions about data.
"""

from __future__ import annotations

import base64
import math
from typing import Any
from urllib.parse import quote

from pygestor.config import redact_url
from pygestor.manager import human_size

#: text longer than this is folded in sample rows (click to expand)
FOLD_AT = 160
#: images larger than this are not inlined into the page
MAX_INLINE_IMAGE = 512 * 1024
#: inlined image bytes per sample table (the page stays light on a dataset of photos)
MAX_INLINE_TOTAL = 6 * 1024 * 1024
#: characters of one text cell sent to the page
MAX_TEXT = 20000

_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


# ---------------------------------------------------------------------- small values
def size(n: int | float | None) -> str:
    return "-" if n is None else human_size(n)


def count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def when(iso: str | None) -> str:
    """``2025-11-25T18:10:03+00:00`` -> ``2025-11-25 18:10``."""
    if not iso:
        return "-"
    return iso.replace("T", " ")[:16]


def middle(text: str, limit: int) -> str:
    """``/a/very/long/path/to/data`` -> ``/a/very/…/to/data``: both ends stay readable."""
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "…" + text[-(limit - head - 1):]


def safe(text: str | None) -> str:
    """Text shown in the page: never a ``user:password@`` part of a URL."""
    return redact_url(text or "")


def error_text(exc: BaseException) -> str:
    """One clear line for the user; credentials in URLs are hidden."""
    from pygestor.errors import PygestorError

    if isinstance(exc, PygestorError):
        return safe(str(exc))
    return safe(f"unexpected error: {type(exc).__name__}: {exc}")


def dataset_href(name: str, subset: str | None = None) -> str:
    href = "/dataset/" + quote(name, safe="/")
    if subset is not None:
        href += "?subset=" + quote(subset, safe="")
    return href


# ---------------------------------------------------------------------- datasets
def dataset_row(summary: dict[str, Any]) -> dict[str, Any]:
    """A row of the datasets table from :func:`pygestor.manager.summarize_dataset`."""
    parts, done = summary.get("partitions") or 0, summary.get("downloaded") or 0
    return {
        "name": summary["name"],
        "href": dataset_href(summary["name"]),
        "pipeline": summary.get("pipeline") or "",
        "source": safe(summary.get("url")),
        "source_short": middle(safe(summary.get("url")), 44),
        "modality": summary.get("modality") or "",
        "subsets": summary.get("subsets") or 0,
        "partitions": parts,
        "downloaded_parts": done,
        "downloaded_bytes": summary.get("downloaded_bytes") or 0,
        "source_bytes": summary.get("source_bytes") or 0,
        "downloaded_label": size(summary.get("downloaded_bytes") or 0),
        "total_label": size(summary.get("source_bytes") or 0),
        "parts_label": f"{done}/{parts} partitions",
        "fraction": round(done / parts, 4) if parts else 0.0,
        "updated_at": summary.get("updated_at") or "",
        "updated_label": when(summary.get("updated_at")),
        "damaged": summary.get("damaged") or "",
    }


def matches(row: dict[str, Any], query: str) -> bool:
    """Whether a table row contains ``query`` (case-insensitive) in any shown text."""
    query = query.strip().lower()
    if not query:
        return True
    return any(query in str(value).lower() for key, value in row.items() if key != "href")


def usage_chart(rows: list[dict[str, Any]], pending: dict[str, int]) -> dict[str, Any]:
    """ECharts options: per dataset, bytes stored vs source bytes not downloaded yet."""
    names = [r["name"] for r in rows][::-1]  # first row on top
    stored = [r["downloaded_bytes"] for r in rows][::-1]
    waiting = [pending.get(r["name"], 0) for r in rows][::-1]
    bytes_js = ("v => { const u = ['B','KB','MB','GB','TB']; let i = 0; "
                "while (Math.abs(v) >= 1000 && i < 4) { v /= 1000; i++; } "
                "return (i ? v.toFixed(1) : v.toFixed(0)) + ' ' + u[i]; }")
    return {
        "animation": False,
        "color": ["#4f46e5", "#cbd5e1"],
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"},
                    ":valueFormatter": bytes_js},
        "legend": {"data": ["Downloaded (stored)", "Not downloaded (source size)"],
                   "top": 0, "left": 0, "icon": "roundRect"},
        "grid": {"left": 8, "right": 40, "top": 36, "bottom": 8, "containLabel": True},
        "xAxis": {"type": "value", "axisLabel": {":formatter": bytes_js},
                  "splitLine": {"lineStyle": {"color": "#eef0f3"}}},
        "yAxis": {"type": "category", "data": names, "axisTick": {"show": False},
                  "axisLine": {"show": False}},
        "series": [
            {"name": "Downloaded (stored)", "type": "bar", "stack": "bytes", "data": stored,
             "barMaxWidth": 22},
            {"name": "Not downloaded (source size)", "type": "bar", "stack": "bytes",
             "data": waiting, "barMaxWidth": 22},
        ],
    }


# ---------------------------------------------------------------------- subsets, partitions
def subset_row(dataset: str, summary: dict[str, Any]) -> dict[str, Any]:
    parts, done = summary.get("partitions") or 0, summary.get("downloaded") or 0
    return {
        "name": summary["name"],
        "href": dataset_href(dataset, summary["name"]),
        "partitions": parts,
        "downloaded": done,
        "status": _status(done, parts),
        "fraction": round(done / parts, 4) if parts else 0.0,
        "rows": summary.get("rows") if summary.get("rows") is not None else -1,
        "rows_label": count(summary.get("rows")),
        "downloaded_bytes": summary.get("downloaded_bytes") or 0,
        "downloaded_label": size(summary.get("downloaded_bytes") or 0),
        "source_bytes": summary.get("source_bytes") or 0,
        "source_label": size(summary.get("source_bytes") or 0),
    }


def partition_row(summary: dict[str, Any]) -> dict[str, Any]:
    """A row of the partitions table from :func:`pygestor.manager.summarize_partition`."""
    return {
        "name": summary["name"],
        "downloaded": bool(summary.get("downloaded")),
        "failed": safe(summary.get("failed")) if summary.get("failed") else "",
        "origin": f"{safe(summary.get('source'))} ({summary.get('source_slice') or '?'})",
        "status": "Downloaded" if summary.get("downloaded") else
        ("Failed" if summary.get("failed") else "Not downloaded"),
        "rows": summary.get("rows") if summary.get("rows") is not None else -1,
        "rows_label": count(summary.get("rows")),
        "size": summary.get("size") or 0,
        "size_label": size(summary.get("size")) if summary.get("downloaded") else "-",
        "source_bytes": summary.get("source_bytes") or 0,
        "source_label": size(summary.get("source_bytes")),
        "row_groups": summary.get("row_groups") or 0,
        "downloaded_at": summary.get("downloaded_at") or "",
        "downloaded_label": when(summary.get("downloaded_at")),
    }


def _status(done: int, total: int) -> str:
    if total and done == total:
        return "Downloaded"
    if done:
        return "Partial"
    return "Not downloaded"


# ---------------------------------------------------------------------- schema
def schema_rows(schema: Any) -> list[dict[str, Any]]:
    """A pyarrow schema as table rows; nested fields follow their parent, indented."""
    rows: list[dict[str, Any]] = []

    def add(field: Any, path: str, depth: int) -> None:
        rows.append({"id": len(rows), "column": path, "name": field.name, "depth": depth,
                     "type": type_name(field.type), "nullable": "yes" if field.nullable else "no"})
        for child, suffix in _children(field.type):
            add(child, f"{path}{suffix}{child.name}", depth + 1)

    for field in schema:
        add(field, field.name, 0)
    return rows


def _children(kind: Any) -> list[tuple[Any, str]]:
    """Nested fields of a type, with the path separator that leads to them."""
    import pyarrow.types as pat

    if pat.is_struct(kind):
        return [(kind.field(i), ".") for i in range(kind.num_fields)]
    if _is_listlike(kind):
        value = kind.value_type
        if pat.is_struct(value):
            return [(value.field(i), "[].") for i in range(value.num_fields)]
        if _is_listlike(value):
            return [(kind.value_field, "[].")]
    return []


def _is_listlike(kind: Any) -> bool:
    import pyarrow.types as pat

    return pat.is_list(kind) or pat.is_large_list(kind) or pat.is_fixed_size_list(kind)


def type_name(kind: Any) -> str:
    """A readable type: leaves in full (``timestamp[us, tz=UTC]``), containers by shape."""
    import pyarrow.types as pat

    if pat.is_struct(kind):
        return f"struct ({kind.num_fields} field{'' if kind.num_fields == 1 else 's'})"
    if _is_listlike(kind):
        value = kind.value_type
        inner = "struct" if pat.is_struct(value) else ("list" if _is_listlike(value)
                                                       else type_name(value))
        prefix = "large_list" if pat.is_large_list(kind) else "list"
        if pat.is_fixed_size_list(kind):
            return f"fixed_size_list<{inner}, {kind.list_size}>"
        return f"{prefix}<{inner}>"
    if pat.is_map(kind):
        return f"map<{type_name(kind.key_type)}, {type_name(kind.item_type)}>"
    if pat.is_dictionary(kind):
        return f"dictionary<{type_name(kind.value_type)}>"
    return str(kind)


# ---------------------------------------------------------------------- rows
def rows_table(table: Any, numbers: Any = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Columns and rows for a rows table from an Arrow table (cells as display dicts), with each
    row's number in the subset (``numbers``; by default 0, 1, ...) in a first column."""
    columns = [{"name": "_n", "label": "row", "field": "_n", "align": "right",
                "classes": "pg-rownum", "headerClasses": "pg-rownum"}]
    columns += [{"name": f"c{i}", "label": str(name), "field": f"c{i}", "align": "left"}
                for i, name in enumerate(table.column_names)]
    values = [column.to_pylist() for column in table.columns]
    numbers = list(range(table.num_rows)) if numbers is None else [int(n) for n in numbers]
    budget = [MAX_INLINE_TOTAL]
    rows = []
    for index in range(table.num_rows):
        row: dict[str, Any] = {"_row": numbers[index], "_n": {"t": "n", "v": f"{numbers[index]:,}"}}
        for i, column in enumerate(values):
            row[f"c{i}"] = cell(column[index], budget)
        rows.append(row)
    return columns, rows


def cell(value: Any, budget: list[int] | None = None) -> dict[str, Any]:
    """One sample cell as ``{"t": kind, ...}``: img (data URL), long (folded text), text, null.

    ``budget`` holds the image bytes that may still be inlined (shared by a table's cells).
    """
    budget = budget if budget is not None else [MAX_INLINE_TOTAL]
    if _is_null(value):
        return {"t": "null", "v": "null"}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _binary(bytes(value), budget)
    if isinstance(value, dict):
        payload = value.get("bytes")
        if isinstance(payload, (bytes, bytearray)) and image_type(bytes(payload)):
            return _binary(bytes(payload), budget, label=str(value.get("path") or ""))
        return _text(_short_repr(value))
    if hasattr(value, "tolist") and not isinstance(value, (str, int, float)):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return _text(_short_repr(value))
    if isinstance(value, float):
        return {"t": "text", "v": f"{value:.6g}"}
    return _text(str(value))


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False


def image_type(data: bytes) -> str | None:
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _binary(data: bytes, budget: list[int], label: str = "") -> dict[str, Any]:
    mime = image_type(data)
    if mime and len(data) <= min(MAX_INLINE_IMAGE, budget[0]):
        budget[0] -= len(data)
        src = f"data:{mime};base64,{base64.b64encode(data).decode()}"
        return {"t": "img", "src": src, "v": label or f"{mime}, {size(len(data))}"}
    if mime:
        return {"t": "text", "v": f"<{mime}, {size(len(data))}: not previewed>"}
    return {"t": "text", "v": f"<{size(len(data))} binary> {data[:16].hex()}"
                              f"{'…' if len(data) > 16 else ''}"}


def _text(text: str) -> dict[str, Any]:
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"… ({len(text) - MAX_TEXT:,} more characters)"
    if len(text) > FOLD_AT:
        return {"t": "long", "short": text[:FOLD_AT].rstrip() + "…", "v": text}
    return {"t": "text", "v": text}


def _short_repr(value: Any, limit: int = 4000) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (bytes, bytearray)):
            return f"<{len(v)} bytes>"
        if hasattr(v, "tolist") and not isinstance(v, (str, int, float)):
            return clean(v.tolist())
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    text = repr(clean(value))
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------------- column statistics
DASH = "\u2013"
#: categories shown as frequent values (not a histogram) when a column has at most this many
CATEGORY_LIMIT = 50


def number(value: Any) -> str:
    """A number for people: ``12,345``, ``0.3333``, ``1.2e+09``; other values as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if 1000 <= abs(value) < 1e15:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def stats_rows(stats: dict[str, Any], types: dict[str, str] | None = None
               ) -> list[dict[str, Any]]:
    """Rows of the statistics table from :func:`pygestor.stats.column_stats` (``types``: the
    readable type of each column, from the schema)."""
    total = stats.get("rows") or 0
    rows = []
    for index, column in enumerate(stats.get("columns") or []):
        nulls = int(column.get("nulls") or 0)
        share = f" ({100 * nulls / total:.1f}%)" if nulls and total else ""
        top = _top_values(column)
        rows.append({
            "id": index, "name": column["name"],
            "type": (types or {}).get(column["name"]) or column.get("type") or "",
            "nulls": nulls, "nulls_label": f"{nulls:,}{share}",
            "summary": stats_summary(column), "top": top,
            "bars": [] if top else histogram_bars(column.get("histogram")),
        })
    return rows


def stats_summary(column: dict[str, Any]) -> str:
    """One line: range, mean and spread, distinct values, lengths."""
    parts: list[str] = []
    kind = column.get("kind")
    if kind in ("number", "date") and column.get("min") is not None:
        parts.append(f"{number(column['min'])} {DASH} {number(column['max'])}")
        if column.get("mean") is not None:
            parts.append(f"mean {number(column['mean'])} · std {number(column.get('std'))}")
        if column.get("nans"):
            parts.append(f"{column['nans']:,} NaN")
    if column.get("distinct") is not None:
        parts.append(f"{column['distinct']:,} distinct")
    elif column.get("distinct_more_than"):
        parts.append(f"more than {column['distinct_more_than']:,} distinct")
    if column.get("min_length") is not None:
        unit = {"binary": "bytes", "list": "items"}.get(str(kind), "characters")
        parts.append(f"{column['min_length']:,} {DASH} {column['max_length']:,} {unit}")
    return " · ".join(parts) or "-"


def _top_values(column: dict[str, Any]) -> list[dict[str, Any]]:
    """Frequent values, when the column reads as categories (few distinct values)."""
    top = column.get("top") or []
    distinct = column.get("distinct")
    if column.get("kind") not in ("string", "bool") or distinct is None \
            or distinct > CATEGORY_LIMIT or not top:
        return []
    largest = max(count for _, count in top) or 1
    return [{"label": middle(str(value), 40), "count": f"{count:,}",
             "w": round(100 * count / largest, 1)} for value, count in top]


def histogram_bars(histogram: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Bars (height in % of the tallest) with a tooltip each, from a stored histogram."""
    if not histogram or not histogram.get("counts"):
        return []
    edges, counts = histogram["edges"], histogram["counts"]
    tallest = max(counts) or 1
    whole = histogram.get("of") == "length" or all(isinstance(e, int) for e in edges)
    bars = []
    for i, count in enumerate(counts):
        low, high = edges[i], edges[i + 1]
        if whole and isinstance(low, int) and isinstance(high, int):
            span = number(low) if high - low == 1 else f"{number(low)} {DASH} {number(high - 1)}"
        else:
            span = f"{number(low)} {DASH} {number(high)}"
        bars.append({"h": round(100 * count / tallest, 1), "tip": f"{span}: {count:,}"})
    return bars


def plan_rows(dataset: Any) -> list[dict[str, Any]]:
    """Rows of the "what would be registered" table of the add dialog (a planned Dataset)."""
    rows = []
    for subset in dataset.subsets.values():
        stats = subset.stats()
        rows.append({"name": subset.name, "partitions": stats["partitions"],
                     "rows_label": count(stats["rows"]),
                     "source_label": size(stats["source_bytes"])})
    return rows
