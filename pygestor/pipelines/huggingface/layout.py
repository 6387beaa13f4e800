"""Hub URLs and repo layouts -> subsets: pure functions, no I/O.

- every parquet file of a revision is mapped to a subset ``<config>/<split>`` the way the Hub's
  viewer does: the ``configs`` of the dataset card's YAML when present, else the layout
  (``data/train-00000-of-00004.parquet`` -> ``default/train``, ``20231101.en/train-*.parquet`` ->
  ``20231101.en/train``, ``dutch/test-*.parquet`` -> ``dutch/test``; split keywords in folder and
  file names). Different configs or splits are never merged.
- a repo without parquet files uses the Hub's auto-converted parquet branch
  (``refs/convert/parquet``, laid out ``{config}/{split}/0000.parquet``).
- a large file is cut into pieces: piece ``k`` of ``n`` is the ``k``-th of ``n`` equal byte shares
  of the file's row groups, resolved to row ranges from the footer at download time
  (:func:`piece_rows`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from pygestor.errors import ConfigError

CONVERT_REF = "refs/convert/parquet"
#: a full commit sha (a pinned revision)
SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: ``{split}-00000-of-00004...``: the split is the name verbatim (``train.clean.100``)
_SHARDED = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-\d{5}-of-\d{5}")
_SEP = r"[-._ 0-9]"
#: split keywords of the Hub's data-files rules (``datasets.data_files``), canonical name first
SPLIT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_SPLIT_ORDER = {"train": 0, "validation": 1, "dev": 2, "test": 3}
_NAME_SEGMENT_BAD = re.compile(r"[^A-Za-z0-9_.\-=+ ]")


# ====================================================================== URLs
def parse_repo_url(url: str) -> tuple[str, str | None, str]:
    """``(repo_id, revision or None, path prefix)`` of a Hub dataset URL.

    Accepts ``https://huggingface.co/datasets/owner/name[/tree/<rev>[/path]]``,
    ``hf://datasets/owner/name[@rev][/path]``, ``datasets/owner/name`` and ``owner/name``.
    """
    text = url.strip()
    revision: str | None = None
    rest: list[str]
    if text.lower().startswith("hf://"):
        body = text[5:].strip("/")
        if body.startswith("datasets/"):
            body = body[len("datasets/"):]
        owner, _, remainder = body.partition("/")
        name, at, after = remainder.partition("@")
        if at and "/" not in name:
            after = unquote(after)
            if after.startswith(CONVERT_REF):
                revision, sub = CONVERT_REF, after[len(CONVERT_REF):]
            elif after.startswith("refs/pr/"):
                number, _, sub = after[len("refs/pr/"):].partition("/")
                revision = f"refs/pr/{number}"
            else:
                revision, _, sub = after.partition("/")
        else:
            name, _, sub = remainder.partition("/")
        repo, rest = f"{owner}/{name}", [s for s in sub.split("/") if s]
    elif "://" in text:
        parts = [unquote(p) for p in urlsplit(text).path.split("/") if p]
        if "datasets" not in parts:
            raise ConfigError(f"{url!r} is not a Hugging Face dataset URL; use "
                              "https://huggingface.co/datasets/owner/name or hf://datasets/owner/name")
        index = parts.index("datasets")
        if len(parts) < index + 3:
            raise ConfigError(f"{url!r} names no dataset repo; expected .../datasets/owner/name")
        repo = f"{parts[index + 1]}/{parts[index + 2]}"
        rest = parts[index + 3:]
        if rest and rest[0] in ("tree", "blob", "resolve") and len(rest) > 1:
            revision, rest = rest[1], rest[2:]
            if revision == "refs" and "/".join(rest).startswith("convert/parquet"):
                revision, rest = CONVERT_REF, rest[2:]
    else:
        parts = [p for p in text.split("/") if p]
        if parts and parts[0] == "datasets":
            parts = parts[1:]
        if len(parts) < 2:
            raise ConfigError(f"{url!r} is not a Hugging Face dataset: expected owner/name or "
                              "https://huggingface.co/datasets/owner/name")
        repo, rest = f"{parts[0]}/{parts[1]}", parts[2:]
    if not _REPO_ID.match(repo):
        raise ConfigError(f"{repo!r} is not a Hugging Face repo id (owner/name)")
    return repo, revision or None, "/".join(rest)


# ====================================================================== files and subsets
@dataclass(frozen=True)
class HubFile:
    """One parquet file of a revision, as the Hub describes it."""

    path: str
    size: int
    sha256: str | None = None
    blob_id: str | None = None

    @property
    def identity(self) -> tuple[str, int, str | None]:
        return self.path, self.size, self.sha256 or self.blob_id


@dataclass
class SubsetPlan:
    """Files of one ``config``/``split``, in order."""

    config: str
    split: str
    files: list[HubFile] = field(default_factory=list)
    partial: bool = False


def files_of(info: Any) -> dict[str, HubFile]:
    """Every file of a ``dataset_info(files_metadata=True)`` answer, by path."""
    found: dict[str, HubFile] = {}
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        sha256 = getattr(lfs, "sha256", None) if lfs is not None else None
        size = getattr(lfs, "size", None) if lfs is not None else None
        found[sibling.rfilename] = HubFile(path=sibling.rfilename,
                                           size=int(size if size is not None else
                                                    (sibling.size or 0)),
                                           sha256=sha256, blob_id=sibling.blob_id)
    return found


def is_parquet(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a data-files glob: ``*`` and ``?`` stay in one folder, ``**`` crosses them."""
    pattern = pattern.strip()
    while pattern.startswith("./"):
        pattern = pattern[2:]
    pattern = pattern.lstrip("/")
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif char == "*":
            out, i = out + "[^/]*", i + 1
        elif char == "?":
            out, i = out + "[^/]", i + 1
        elif char == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            out, i = out + f"[{body}]", end + 1
        else:
            out, i = out + re.escape(char), i + 1
    return re.compile(out + r"\Z")


def match_data_files(patterns: list[str], paths: list[str]) -> list[str]:
    """Paths matching any of ``patterns`` (a pattern naming a folder matches what is below it)."""
    matched: list[str] = []
    for pattern in patterns:
        regex = _glob_regex(pattern)
        hits = [p for p in paths if regex.match(p)]
        if not hits and not re.search(r"[*?\[]", pattern):
            folder = pattern.strip("/").removeprefix("./") + "/"
            hits = [p for p in paths if p.startswith(folder)]
        matched += [p for p in hits if p not in matched]
    return sorted(matched)


def _keyword_split(text: str, whole: bool) -> str | None:
    for split, words in SPLIT_KEYWORDS.items():
        for word in words:
            if whole:
                regex = rf"(?:.*{_SEP})?{word}(?:{_SEP}.*)?"
                if re.fullmatch(regex, text, re.IGNORECASE):
                    return split
            elif re.search(rf"(?:^|{_SEP}){word}{_SEP}", text, re.IGNORECASE):
                return split
    return None


def split_from_layout(path: str) -> tuple[list[str], str | None]:
    """``(config folders, split or None)`` of a file from its folders and name."""
    segments = path.split("/")
    folders, name = segments[:-1], segments[-1]
    split: str | None = None
    sharded = _SHARDED.match(name)
    if sharded:
        split = sharded.group("split")
    else:
        for index in range(len(folders) - 1, -1, -1):
            split = _keyword_split(folders[index], whole=True)
            if split is not None:
                folders = folders[:index] + folders[index + 1:]
                break
        if split is None:
            split = _keyword_split(name, whole=False)
    return [f for f in folders if f.lower() != "data"], split


def map_layout(paths: list[str], config_name: str | None = None,
               base: str = "") -> tuple[dict[tuple[str, str], list[str]], list[str]]:
    """Subsets from the folder layout: ``{(config, split): paths}`` and the files left out.

    Each folder (apart from ``data/`` and split folders) is a config of its own; a file with no
    split in its name or folders is ``train`` when no file of its config names a split, and is
    left out otherwise (as the Hub does).
    """
    by_config: dict[str, list[tuple[str, str | None]]] = {}
    for path in paths:
        rel = path[len(base):].lstrip("/") if base and path.startswith(base) else path
        folders, split = split_from_layout(rel)
        config = config_name or "/".join(folders) or "default"
        by_config.setdefault(config, []).append((path, split))
    mapping: dict[tuple[str, str], list[str]] = {}
    ignored: list[str] = []
    for config, entries in by_config.items():
        named = any(split is not None for _, split in entries)
        for path, split in entries:
            if split is None and named:
                ignored.append(path)
                continue
            mapping.setdefault((config, split or "train"), []).append(path)
    return mapping, ignored


def map_converted(paths: list[str]) -> tuple[dict[tuple[str, str], list[str]], set[str]]:
    """Subsets of the ``refs/convert/parquet`` branch: ``{config}/{split}/NNNN.parquet``
    (``partial-{split}`` when the Hub converted only the first rows)."""
    mapping: dict[tuple[str, str], list[str]] = {}
    partial: set[str] = set()
    rest: list[str] = []
    for path in paths:
        segments = path.split("/")
        if len(segments) == 3:
            config, split = segments[0], segments[1]
            if split.startswith("partial-"):
                split = split[len("partial-"):]
                partial.add(f"{config}\0{split}")
            mapping.setdefault((config, split), []).append(path)
        else:
            rest.append(path)
    if rest:
        extra, _ = map_layout(rest)
        for key, value in extra.items():
            mapping.setdefault(key, []).extend(value)
    return mapping, partial


def yaml_configs(card: Any) -> list[tuple[str, dict[str, list[str]] | None, str]] | None:
    """The ``configs`` of a dataset card: ``[(name, {split: patterns} or None, data_dir)]``."""
    if card is None:
        return None
    try:
        configs = card.get("configs")
    except Exception:  # noqa: BLE001 - a card we cannot read is a card without configs
        return None
    if not isinstance(configs, list) or not configs:
        return None
    out: list[tuple[str, dict[str, list[str]] | None, str]] = []
    for entry in configs:
        if not isinstance(entry, dict) or not entry.get("config_name"):
            continue
        data_dir = str(entry.get("data_dir") or "").strip("/")
        files = entry.get("data_files")
        splits: dict[str, list[str]] | None = {}
        if files is None:
            splits = None
        elif isinstance(files, str):
            splits = {"train": [files]}
        elif isinstance(files, dict):
            splits = {str(k): _as_list(v) for k, v in files.items()}
        elif isinstance(files, list):
            for item in files:
                if isinstance(item, str):
                    splits.setdefault("train", []).append(item)
                elif isinstance(item, dict):
                    splits.setdefault(str(item.get("split") or "train"), []).extend(
                        _as_list(item.get("path")))
        if splits and data_dir:
            splits = {k: [f"{data_dir}/{p.lstrip('./')}" for p in v] for k, v in splits.items()}
        out.append((str(entry["config_name"]), splits, data_dir))
    return out or None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def map_files(files: dict[str, HubFile],
              configs: list[tuple[str, dict[str, list[str]] | None, str]] | None, converted: bool
              ) -> tuple[dict[tuple[str, str], list[str]], list[str], bool, set[str]]:
    """Subsets of one revision's files: ``{(config, split): paths}``, the files left out,
    whether every data file is parquet, and the ``"<config>\\0<split>"`` the Hub converted only
    partially.

    ``configs`` are the card's (:func:`yaml_configs`), ignored for the converted branch.
    """
    parquet = sorted(p for p in files if is_parquet(p))
    ignored: list[str] = []
    partial: set[str] = set()
    complete = bool(parquet)
    mapping: dict[tuple[str, str], list[str]] = {}
    if converted:
        mapping, partial = map_converted(parquet)
    elif configs:
        data_files = sorted(p for p in files if not p.endswith((".md", ".gitattributes"))
                            and not p.rsplit("/", 1)[-1].startswith("."))
        for config, splits, data_dir in configs:
            if splits is None:
                below = [p for p in parquet if not data_dir or p.startswith(data_dir + "/")]
                found, left = map_layout(below, config_name=config, base=data_dir)
                ignored += left
                if not found:
                    complete = False
                mapping.update(found)
                continue
            for split, patterns in splits.items():
                matched = match_data_files(patterns, data_files)
                usable = [p for p in matched if is_parquet(p)]
                if not usable or len(usable) != len(matched):
                    complete = False
                if usable:
                    mapping[(config, split)] = usable
    else:
        mapping, ignored = map_layout(parquet)
    return mapping, ignored, complete, partial


def plan_order(plan: SubsetPlan) -> tuple[str, int, str]:
    """Sort key of subsets found from the layout: by config, then train, validation, test."""
    return plan.config, _SPLIT_ORDER.get(plan.split, 9), plan.split


# ====================================================================== row ranges of a piece
def piece_rows(metadata: Any, piece: int, pieces: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of piece ``piece`` of ``pieces``: equal byte shares of the file's
    row groups (compressed sizes), cut at row-group boundaries when a row group is smaller than a
    share and by rows inside larger ones. Deterministic for a given file."""
    total_rows = metadata.num_rows
    if pieces <= 1:
        return 0, total_rows
    sizes: list[int] = []
    rows: list[int] = []
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        size = sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        sizes.append(max(size, 1))
        rows.append(group.num_rows)
    total = sum(sizes)
    share = total / pieces

    def boundary(k: int) -> int:
        if k <= 0:
            return 0
        if k >= pieces:
            return total_rows
        target = share * k
        offset = first_row = 0
        for size, count in zip(sizes, rows, strict=True):
            if offset + size > target:
                if size <= share:  # snap to the nearer row-group edge
                    return first_row if target - offset < offset + size - target else \
                        first_row + count
                return first_row + round(count * (target - offset) / size)
            offset += size
            first_row += count
        return total_rows

    start, stop = boundary(piece), boundary(piece + 1)
    return start, max(start, stop)


# ====================================================================== names
def names(value: Any) -> list[str]:
    """The names an option gives: a list, or a comma-separated string."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def safe_subset_name(name: str) -> str:
    """``name`` with every segment made a valid subset folder name (at most four segments)."""
    segments = []
    for segment in name.split("/"):
        segment = _NAME_SEGMENT_BAD.sub("_", segment)[:100]
        if not segment or segment in (".", "..") or not re.match(r"[A-Za-z0-9_]", segment):
            segment = "_" + segment
        segments.append(segment)
    if len(segments) > 4:
        segments = ["_".join(segments[:-3]), *segments[-3:]]
    return "/".join(segments)


def unique(name: str, used: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... when ``used`` has it already (then adds it)."""
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{name}_{n}", n + 1
    used.add(candidate)
    return candidate

