"""The ``HuggingFaceParquet`` pipeline: a dataset repo on the Hugging Face Hub.

Discover (one API call, ``dataset_info(files_metadata=True)``, plus a second one only for a repo
without parquet files):

- every parquet file of the pinned revision is mapped to a subset ``<config>/<split>`` the way the
  Hub's viewer does: the ``configs`` of the dataset card's YAML when present, else the layout
  (``data/train-00000-of-00004.parquet`` -> ``default/train``, ``20231101.en/train-*.parquet`` ->
  ``20231101.en/train``, ``dutch/test-*.parquet`` -> ``dutch/test``; split keywords in folder and
  file names). Different configs or splits are never merged.
- a repo without parquet files uses the Hub's auto-converted parquet branch
  (``refs/convert/parquet``, laid out ``{config}/{split}/0000.parquet``).
- the dataset is pinned: ``dataset.revision`` (and the ``revision`` option) is the commit sha of
  the requested revision (``main`` by default); every partition records its file's path, size,
  sha256 (LFS) and git blob id.
- partitions are planned from file sizes alone: a file of ``S`` bytes becomes
  ``ceil(S / partition_size)`` partitions, piece ``k`` of ``n`` being the ``k``-th of ``n`` equal
  byte shares of the file's row groups, resolved to row ranges from the footer at download time.
  No request per file when adding (wikimedia/wikipedia has thousands of files); row counts are
  filled in as partitions are downloaded.

Fetch: the upstream file is downloaded once through the Hub's resolve route at the pinned sha into
a local staging file (resumed with a ``Range`` request after a dropped connection), verified
against its size and sha256 (or git blob id), then its rows are re-written through
:class:`~pygestor.pipelines.formats.PartitionWriter` with page checksums verified on read. The
partitions cut from one large file share that one verified copy (a per-file lock; the copy is
deleted when its last piece is written or when the pipeline object goes away); range reads through
``HfFileSystem`` were not used because a range cannot be verified against the file's sha256.

Tokens: ``HF_TOKEN`` or the standard ``huggingface_hub`` login, read by ``huggingface_hub`` when a
request is made; a token is never an option, never stored, never printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from pygestor.backends.retry import call_with_retries
from pygestor.backends.storage import is_stale_temp, temp_name
from pygestor.catalog import Dataset, Partition, Subset
from pygestor.config import SECRET_KEY_PATTERN
from pygestor.errors import ConfigError, PygestorError, SourceError
from pygestor.pipelines import formats
from pygestor.pipelines.base import Pipeline, Progress

log = logging.getLogger("pygestor.huggingface")

CONVERT_REF = "refs/convert/parquet"
_SHA = re.compile(r"^[0-9a-f]{40}$")
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
#: bytes handed over by the HTTP client at a time while downloading a file
DOWNLOAD_CHUNK = 1 << 20


# ====================================================================== huggingface_hub access
def _hub() -> Any:
    """The ``huggingface_hub`` module (imported on first use only)."""
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError("the HuggingFaceParquet pipeline needs huggingface_hub: "
                          "pip install 'pygestor[hf]'") from None
    return huggingface_hub


def _transport_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            found.append(__import__(module).TransportError)
    return tuple(found)


def token_available() -> bool:
    """Whether huggingface_hub would send a token (HF_TOKEN or a login); the token is not read
    into Pygestor's objects."""
    with contextlib.suppress(Exception):
        return _hub().get_token() is not None
    return False


def hub_error(exc: BaseException, repo: str, *, revision: str | None = None,
              path: str | None = None, url: str | None = None) -> PygestorError:
    """A one-line :class:`SourceError` for an exception of huggingface_hub or the network.

    Transient failures (5xx, 408, 429, dropped connections, time-outs) are marked
    ``transient`` so the download machinery retries them.
    """
    from huggingface_hub import errors

    page = f"{_endpoint().rstrip('/')}/datasets/{repo}"
    where = url or page
    if isinstance(exc, PygestorError):
        return exc
    if isinstance(exc, errors.GatedRepoError):
        if token_available():
            return SourceError(f"{repo} is gated and the Hugging Face token in use has no access "
                               f"to it: accept its terms on the Hub ({page}) with that account, "
                               "or set HF_TOKEN to a token that has access")
        return SourceError(f"{repo} is gated: accept its terms on the Hub ({page}) and set "
                           "HF_TOKEN (or log in with 'hf auth login')")
    if isinstance(exc, errors.DisabledRepoError):
        return SourceError(f"{repo} is disabled on the Hub ({page}); it cannot be downloaded")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return SourceError(f"no dataset repo {repo!r} on the Hub ({_endpoint()}): check the "
                           "owner/name spelling; a private repo also needs HF_TOKEN")
    if isinstance(exc, errors.RevisionNotFoundError):
        return SourceError(f"{repo} has no revision {revision!r} on the Hub: use a branch, tag "
                           "or commit sha that exists (see the repo's history on the Hub)")
    if isinstance(exc, errors.EntryNotFoundError):
        return SourceError(f"{path or 'a file'} is missing from {repo} at revision {revision}: "
                           "it was removed upstream; run 'pygestor check-updates' and "
                           "'pygestor download --update'")
    if isinstance(exc, errors.HfHubHTTPError):
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        detail = getattr(exc, "server_message", None) or ""
        detail = f": {detail.strip().splitlines()[0][:300]}" if detail.strip() else ""
        hint = ""
        if status in (401, 403):
            hint = ("; the Hub refused the token in use: check HF_TOKEN or 'hf auth login'"
                    if token_available() else "; this repo needs a token: set HF_TOKEN")
        error = SourceError(f"the Hub answered {status or 'an error'} for {where}{detail}{hint}")
        error.transient = status is None or status >= 500 or status in (408, 429)  # type: ignore[attr-defined]
        return error
    if isinstance(exc, _transport_errors()) or type(exc).__name__.endswith(
            ("Timeout", "ProtocolError", "NetworkError", "ConnectError", "ReadError")):
        error = SourceError(f"network failure talking to the Hub for {where}: "
                            f"{type(exc).__name__}: {_first_line(exc)}")
        error.transient = True  # type: ignore[attr-defined]
        return error
    if isinstance(exc, OSError):
        return SourceError(f"failed downloading {where}: {_first_line(exc)}")
    return SourceError(f"unexpected error from the Hub for {where}: {type(exc).__name__}: "
                       f"{_first_line(exc)}")


def _endpoint() -> str:
    with contextlib.suppress(Exception):
        from huggingface_hub import constants

        return constants.ENDPOINT
    return "https://huggingface.co"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


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


# ====================================================================== the shared local copies
@dataclass
class _Upstream:
    """A local, verified copy of one upstream file, shared by the partitions cut from it."""

    path: str
    pieces: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: bool = False
    done: set[int] = field(default_factory=set)


def _remove_copies(copies: dict[Any, _Upstream]) -> None:
    for entry in list(copies.values()):
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
    copies.clear()


class _Digest:
    """sha256 of the content (LFS files) or git's blob sha1 (plain git files)."""

    def __init__(self, sha256: str | None, blob_id: str | None, size: int) -> None:
        if sha256:
            self.kind, self.expected = "sha256", sha256
            self._hash = hashlib.sha256()
        elif blob_id:
            self.kind, self.expected = "git blob id", blob_id
            self._hash = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        else:
            self.kind, self.expected = "", ""
            self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def ok(self) -> bool:
        return not self.expected or self._hash.hexdigest() == self.expected


# ====================================================================== the pipeline
class HuggingFaceParquetPipeline(Pipeline):
    """A dataset repo on the Hugging Face Hub: configs and splits become subsets.

    Options:
        revision: branch, tag or commit sha to pin (default ``main``); stored as the commit sha.
        configs: only these configs (a list, or a comma-separated string).
        splits: only these splits.
    A URL may also carry the revision (``hf://datasets/o/n@rev``, ``.../tree/<rev>``) and a folder
    (``hf://datasets/o/n/20231101.en``: only files below it).
    """

    name: ClassVar[str] = "HuggingFaceParquet"
    description: ClassVar[str] = "a Hugging Face Hub dataset repo (parquet files, or the Hub's " \
                                 "auto-converted parquet branch)"
    #: options this pipeline understands (subclasses add theirs)
    OPTIONS: ClassVar[frozenset[str]] = frozenset({"revision", "configs", "splits"})

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._copies: dict[tuple[str, str, str, str], _Upstream] = {}
        self._copies_guard = threading.Lock()
        self._swept: set[str] = set()
        # the shared copies go away with the pipeline object (end of a download) or the process
        weakref.finalize(self, _remove_copies, self._copies)

    @classmethod
    def accepts(cls, url: str) -> bool:
        lowered = url.lower()
        return "huggingface.co/datasets/" in lowered or lowered.startswith("hf://datasets/")

    # ------------------------------------------------------------------ hooks for subclasses
    def default_url(self, name: str) -> str | None:
        """The source when ``add`` gets no URL (here: the dataset name as ``owner/name``)."""
        return name if "/" in name else None

    def keep(self, config: str, split: str, options: dict[str, Any]) -> bool:
        """Whether a config/split is part of the dataset (``configs``/``splits`` options)."""
        configs, splits = _names(options.get("configs")), _names(options.get("splits"))
        return (not configs or config in configs) and (not splits or split in splits)

    def subset_name(self, config: str, split: str) -> str:
        """The subset a config/split becomes (``<config>/<split>``)."""
        return f"{config}/{split}"

    def describe(self, dataset: Dataset, info: Any) -> None:
        """Fill description, modality and license (from the Hub's card data); the subsets are
        planned already."""
        card = info.card_data
        get = card.get if card is not None else (lambda key, default=None: default)
        license_ = get("license")
        if isinstance(license_, list):
            license_ = ", ".join(str(x) for x in license_)
        dataset.license = str(license_ or "")
        pretty = get("pretty_name")
        dataset.description = str(pretty or info.description or "")[:2000]
        categories = get("task_categories") or []
        modality = get("modality") or ""
        if not modality and isinstance(categories, list):
            joined = " ".join(str(c) for c in categories)
            for word, kind in (("audio", "audio"), ("speech", "audio"), ("image", "image"),
                               ("video", "video"), ("text", "text"), ("tabular", "tabular")):
                if word in joined:
                    modality = kind
                    break
        dataset.modality = str(modality or "")

    # ------------------------------------------------------------------ discover
    def discover(self, name: str, url: str | None, options: dict[str, Any]) -> Dataset:
        return self._discover(name, url, options, self.settings.partition_size)

    def _discover(self, name: str, url: str | None, options: dict[str, Any],
                  partition_size: int) -> Dataset:
        self._check_options(options)
        source = url or self.default_url(name)
        if not source:
            raise ConfigError(f"the {self.name} pipeline needs a URL "
                              "(https://huggingface.co/datasets/owner/name) or a name owner/name")
        repo, url_revision, prefix = parse_repo_url(source)
        requested = str(options.get("revision") or url_revision or "main")
        info = self.dataset_info(repo, requested)
        tracking = "main" if _SHA.match(requested) else requested
        converted = requested == CONVERT_REF
        plans, ignored, complete, found = self._plan_files(info, converted, prefix, options)
        if not converted and not complete:
            try:
                converted_info = self.dataset_info(repo, CONVERT_REF)
            except SourceError as exc:
                if getattr(exc, "transient", False):
                    raise
                converted_info = None
                if not plans:
                    raise SourceError(
                        f"{repo} at {requested} has no parquet files this pipeline can use and no "
                        "auto-converted parquet branch (refs/convert/parquet); use the files "
                        "pipeline for other formats") from None
            if converted_info is not None:
                plan = self._plan_files(converted_info, True, prefix, options)
                if plan[0]:
                    plans, ignored, _, found = plan
                    info, converted, tracking = converted_info, True, CONVERT_REF
        self._check_filters(found, options)
        if not plans:
            raise SourceError(f"no parquet files of {repo} at {requested} match "
                              f"{_filters_text(options, prefix)}")
        if info.gated and not token_available():
            log.warning("%s is gated: downloads need HF_TOKEN (accept its terms on the Hub)", repo)
        stored = {k: v for k, v in options.items() if k != "revision"}
        stored["revision"] = info.sha
        stored_url = url or (source if "://" in source else f"hf://datasets/{repo}")
        dataset = Dataset(name=name, url=stored_url, pipeline=self.name,
                          options=stored, revision=info.sha)
        dataset.extra["hf"] = {"repo": repo, "tracking": tracking, "converted": converted,
                               "path": prefix, "partition_size": partition_size,
                               "gated": bool(info.gated)}
        if ignored:
            dataset.extra["hf"]["ignored_files"] = ignored[:100]
        used: set[str] = set()
        for plan in plans:
            subset_name = _unique(_safe_subset_name(self.subset_name(plan.config, plan.split)),
                                  used)
            dataset.subsets[subset_name] = self._plan_subset(subset_name, plan, repo, info.sha,
                                                             partition_size)
        self.describe(dataset, info)
        return dataset

    def _check_options(self, options: dict[str, Any]) -> None:
        secret = [k for k in options if SECRET_KEY_PATTERN.search(k)]
        if secret:
            raise ConfigError(f"do not pass {', '.join(secret)} as an option: set HF_TOKEN or log "
                              "in with 'hf auth login'; tokens are read when needed and never "
                              "stored")
        unknown = sorted(set(options) - self.OPTIONS)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} for the {self.name} "
                              f"pipeline; it understands {', '.join(sorted(self.OPTIONS))}")

    def dataset_info(self, repo: str, revision: str) -> Any:
        """One ``dataset_info(files_metadata=True)`` call, with retries and clear errors."""
        hub = _hub()

        def call() -> Any:
            try:
                return hub.HfApi().dataset_info(repo, revision=revision, files_metadata=True,
                                                timeout=self.settings.timeout)
            except Exception as exc:  # noqa: BLE001 - translated to one clear error
                url = f"{_endpoint().rstrip('/')}/api/datasets/{repo}/revision/{revision}"
                raise hub_error(exc, repo, revision=revision, url=url) from None
        return call_with_retries(call, attempts=self.settings.retries,
                                 backoff=self.settings.retry_backoff,
                                 what=f"reading {repo}@{revision} from the Hub")

    def _plan_files(self, info: Any, converted: bool, prefix: str, options: dict[str, Any]
                    ) -> tuple[list[SubsetPlan], list[str], bool, set[tuple[str, str]]]:
        """Subsets of one revision: (plans, files left out, every data file is parquet, every
        (config, split) found before filtering)."""
        files = files_of(info)
        parquet = sorted(p for p in files if is_parquet(p))
        configs = None if converted else yaml_configs(info.card_data)
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
        plans: list[SubsetPlan] = []
        for (config, split), paths in mapping.items():
            if prefix:
                paths = [p for p in paths if p == prefix or p.startswith(prefix.rstrip("/") + "/")]
            if not paths or not self.keep(config, split, options):
                continue
            plans.append(SubsetPlan(config, split, [files[p] for p in sorted(paths)],
                                    partial=f"{config}\0{split}" in partial))
        if not configs:
            plans.sort(key=lambda p: (p.config, _SPLIT_ORDER.get(p.split, 9), p.split))
        return plans, ignored, complete, set(mapping)

    def _check_filters(self, found: set[tuple[str, str]], options: dict[str, Any]) -> None:
        """A clear error for ``configs``/``splits`` options naming what the repo lacks."""
        if not found:
            return
        for key, index in (("configs", 0), ("splits", 1)):
            wanted = _names(options.get(key))
            known = sorted({k[index] for k in found})
            missing = [w for w in wanted if w not in known]
            if missing:
                shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "")
                raise ConfigError(f"{key}: {', '.join(missing)} not found; available: {shown}")

    def _plan_subset(self, name: str, plan: SubsetPlan, repo: str, sha: str,
                     partition_size: int) -> Subset:
        subset = Subset(name=name, description=f"config {plan.config}, split {plan.split}"
                        + (" (partial conversion by the Hub)" if plan.partial else ""),
                        extra={"config": plan.config, "split": plan.split})
        for item in plan.files:
            pieces = max(1, math.ceil(item.size / partition_size))
            for k in range(pieces):
                source: dict[str, Any] = {"url": f"hf://datasets/{repo}@{sha}/{item.path}",
                                          "path": item.path, "size": item.size,
                                          "piece": k, "pieces": pieces}
                if item.sha256:
                    source["sha256"] = item.sha256
                if item.blob_id:
                    source["blob_id"] = item.blob_id
                share = item.size * (k + 1) // pieces - item.size * k // pieces
                subset.partitions.append(Partition(name=f"part-{len(subset.partitions):05d}.parquet",
                                                   source=source, source_bytes=share))
        return subset

    # ------------------------------------------------------------------ fetch
    def fetch(self, dataset: Dataset, subset: Subset, partition: Partition, dest: str,
              progress: Progress) -> None:
        repo = _repo_of(dataset)
        revision = dataset.revision or "main"
        source = partition.source
        folder = os.path.dirname(os.path.abspath(dest))
        entry = self._entry(repo, revision, source, folder)
        _in_use(entry.path, +1)
        try:
            self._local_copy(entry, repo, revision, source, progress)
            self._write_piece(entry.path, source, dest)
        except BaseException:
            self._release(repo, revision, source, folder, entry, done=False)
            raise
        finally:
            _in_use(entry.path, -1)
        self._release(repo, revision, source, folder, entry, done=True)

    def _write_piece(self, local: str, source: dict[str, Any], dest: str) -> None:
        import fsspec

        fs = fsspec.filesystem("file")
        pf = formats.open_parquet(fs, local)
        try:
            start, stop = piece_rows(pf.metadata, int(source.get("piece", 0)),
                                     int(source.get("pieces", 1)))
            schema = pf.schema_arrow
        finally:
            pf.close()
        writer = formats.PartitionWriter(dest, schema, self.settings.row_group_size,
                                         self.settings.compression)
        try:
            for batch in formats.iter_parquet_rows(fs, local, start, stop):
                writer.write(batch)
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        if written.num_rows != stop - start:
            raise SourceError(f"{source.get('url')}: expected {stop - start} rows, wrote "
                              f"{written.num_rows}")

    def _entry(self, repo: str, revision: str, source: dict[str, Any],
               folder: str) -> _Upstream:
        key = (folder, repo, revision, source["path"])
        with self._copies_guard:
            if folder not in self._swept:
                self._swept.add(folder)
                _sweep_stale(folder)
            entry = self._copies.get(key)
            if entry is None:
                base = source["path"].rsplit("/", 1)[-1]
                entry = _Upstream(path=os.path.join(folder, temp_name(f"upstream-{base}")),
                                  pieces=int(source.get("pieces", 1)))
                self._copies[key] = entry
        return entry

    def _local_copy(self, entry: _Upstream, repo: str, revision: str, source: dict[str, Any],
                    progress: Progress) -> None:
        """Make ``entry`` a complete, verified local copy (once, whichever piece comes first)."""
        with entry.lock:
            if entry.ready and not os.path.exists(entry.path):
                entry.ready = False  # swept by another download in this process: fetch again
            if not entry.ready:
                try:
                    self.download_file(repo, revision, source, entry.path, progress)
                except BaseException as exc:
                    # a partial copy is kept for a retry to resume (transient failures only)
                    if not getattr(exc, "transient", False):
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
                    raise
                entry.ready = True

    def _release(self, repo: str, revision: str, source: dict[str, Any], folder: str,
                 entry: _Upstream, done: bool) -> None:
        key = (folder, repo, revision, source["path"])
        with self._copies_guard:
            if done:
                entry.done.add(int(source.get("piece", 0)))
            if len(entry.done) >= entry.pieces and self._copies.get(key) is entry:
                del self._copies[key]
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    def download_file(self, repo: str, revision: str, source: dict[str, Any], path: str,
                      progress: Progress) -> None:
        """Download one upstream file to ``path`` and verify its size and hash.

        A partial ``path`` left by a failed attempt is resumed with a ``Range`` request.
        """
        hub = _hub()
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        url = hub.hf_hub_url(repo, source["path"], repo_type="dataset", revision=revision)
        expected = int(source["size"])
        digest = _Digest(source.get("sha256"), source.get("blob_id"), expected)
        have = os.path.getsize(path) if os.path.exists(path) else 0
        if have > expected:
            os.unlink(path)
            have = 0
        if have:
            with open(path, "rb") as handle:
                while chunk := handle.read(8 << 20):
                    digest.update(chunk)
        headers = build_hf_headers()  # the token (HF_TOKEN or login) is added here, not stored
        if have:
            headers["Range"] = f"bytes={have}-"
        session = get_session()
        if not hasattr(session, "stream"):
            raise ConfigError("the HuggingFaceParquet pipeline needs huggingface_hub >= 1.0")
        try:
            with session.stream("GET", url, headers=headers, timeout=self.settings.timeout,
                                follow_redirects=True) as response:
                hf_raise_for_status(response)
                mode = "ab"
                if have and response.status_code != 206:
                    digest = _Digest(source.get("sha256"), source.get("blob_id"), expected)
                    have, mode = 0, "wb"
                with open(path, mode) as out:
                    for chunk in response.iter_bytes(chunk_size=DOWNLOAD_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        have += len(chunk)
                        progress(len(chunk))
                        if have > expected:
                            break
        except Exception as exc:  # noqa: BLE001 - translated to one clear error
            raise hub_error(exc, repo, revision=revision, path=source["path"], url=url) from None
        if have != expected or not digest.ok():
            with contextlib.suppress(OSError):
                os.unlink(path)
            what = (f"{have} bytes instead of {expected}" if have != expected
                    else f"its {digest.kind} does not match the Hub's")
            error = SourceError(f"{url}: the downloaded file is corrupt ({what}); "
                                "it will be fetched again")
            error.transient = True  # type: ignore[attr-defined]
            raise error

    # ------------------------------------------------------------------ updates
    def check_updates(self, dataset: Dataset) -> dict[str, Any]:
        """Compare the recorded revision and blob ids with the tracked branch: one API call."""
        hf = dataset.extra.get("hf") or {}
        repo = _repo_of(dataset)
        tracking = hf.get("tracking") or "main"
        info = self.dataset_info(repo, tracking)
        plans = self._plan_files(info, bool(hf.get("converted")), hf.get("path") or "",
                                 _filter_options(dataset.options))[0]
        latest = {f.path: f.identity for plan in plans for f in plan.files}
        recorded: dict[str, tuple[str, int, str | None]] = {}
        subsets_of: dict[str, set[str]] = {}
        for subset, part in dataset.partitions:
            source = part.source
            recorded[source["path"]] = (source["path"], int(source.get("size") or 0),
                                        source.get("sha256") or source.get("blob_id"))
            subsets_of.setdefault(source["path"], set()).add(subset.name)
        changed = sorted(p for p in recorded.keys() & latest.keys() if recorded[p] != latest[p])
        added = sorted(latest.keys() - recorded.keys())
        removed = sorted(recorded.keys() - latest.keys())
        affected = sorted({s for p in changed + removed for s in subsets_of.get(p, ())})
        return {"supported": True, "dataset": dataset.name, "repo": repo, "tracking": tracking,
                "revision": dataset.revision, "latest": info.sha,
                "revision_changed": info.sha != dataset.revision,
                "up_to_date": not (changed or added or removed),
                "changed": changed, "added": added, "removed": removed,
                "affected_subsets": affected}

    def refresh(self, dataset: Dataset) -> Dataset:
        """The dataset re-discovered at the latest revision of the branch it tracks."""
        hf = dataset.extra.get("hf") or {}
        options = {**_filter_options(dataset.options), "revision": hf.get("tracking") or "main"}
        url = dataset.url or f"hf://datasets/{_repo_of(dataset)}"
        return self._discover(dataset.name, url, options,
                              int(hf.get("partition_size") or self.settings.partition_size))

    def merge_update(self, record: Dataset, latest: Dataset) -> list[tuple[str, str]]:
        """Move ``record`` to ``latest`` in place, keeping the downloaded state of partitions
        whose source is unchanged; returns ``(subset, partition)`` whose stored files are stale
        (changed or gone upstream) and must be deleted."""
        stale: list[tuple[str, str]] = []
        for subset_name, old_subset in record.subsets.items():
            new_subset = latest.subsets.get(subset_name)
            new_parts = {p.name: p for p in new_subset.partitions} if new_subset else {}
            for part in old_subset.partitions:
                new = new_parts.get(part.name)
                if new is not None and _same_source(part.source, new.source):
                    for key in ("size", "num_rows", "row_groups", "checksum", "footer",
                                "downloaded_at"):
                        setattr(new, key, getattr(part, key))
                else:
                    stale.append((subset_name, part.name))
        record.subsets = latest.subsets
        record.revision = latest.revision
        record.options["revision"] = latest.options.get("revision")
        record.extra["hf"] = latest.extra.get("hf", {})
        return stale


# ====================================================================== helpers
def _same_source(old: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("path", "size", "sha256", "blob_id", "piece", "pieces")
    return all(old.get(k) == new.get(k) for k in keys)


def _repo_of(dataset: Dataset) -> str:
    repo = (dataset.extra.get("hf") or {}).get("repo")
    if repo:
        return str(repo)
    return parse_repo_url(dataset.url or dataset.name)[0]


def _filter_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k != "revision"}


def _names(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _filters_text(options: dict[str, Any], prefix: str) -> str:
    parts = [f"{k}={options[k]!r}" for k in sorted(options) if k != "revision"]
    if prefix:
        parts.append(f"path {prefix!r}")
    return ", ".join(parts) or "(no filter)"


def _safe_subset_name(name: str) -> str:
    segments = []
    for segment in name.split("/"):
        segment = _NAME_SEGMENT_BAD.sub("_", segment)[:100]
        if not segment or segment in (".", "..") or not re.match(r"[A-Za-z0-9_]", segment):
            segment = "_" + segment
        segments.append(segment)
    if len(segments) > 4:
        segments = ["_".join(segments[:-3]), *segments[-3:]]
    return "/".join(segments)


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{name}_{n}", n + 1
    used.add(candidate)
    return candidate


_IN_USE: dict[str, int] = {}
_IN_USE_LOCK = threading.Lock()


def _in_use(path: str, delta: int) -> None:
    with _IN_USE_LOCK:
        count = _IN_USE.get(path, 0) + delta
        if count > 0:
            _IN_USE[path] = count
        else:
            _IN_USE.pop(path, None)


def _sweep_stale(folder: str) -> None:
    """Remove upstream copies nobody uses from a staging folder: those of dead processes, and
    this process's own that no fetch is using (left by a failed download)."""
    mine = f"-{os.getpid()}-"
    with contextlib.suppress(OSError):
        for entry in os.listdir(folder):
            if not entry.startswith(".upstream-"):
                continue
            path = os.path.join(folder, entry)
            owned = mine in entry.rsplit(".tmp-", 1)[-1]
            with _IN_USE_LOCK:
                unused = path not in _IN_USE
            if is_stale_temp(entry) or (owned and unused):
                with contextlib.suppress(OSError):
                    os.unlink(path)


__all__ = ["CONVERT_REF", "HuggingFaceParquetPipeline", "hub_error", "map_layout",
           "parse_repo_url", "piece_rows"]
