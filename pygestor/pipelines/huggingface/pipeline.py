"""The ``HuggingFaceParquet`` pipeline: a dataset repo on the Hugging Face Hub.

Discover (one API call, ``dataset_info(files_metadata=True)``, plus a second one only for a repo
without parquet files):

- every parquet file of the pinned revision is mapped to a subset ``<config>/<split>`` the way the
  Hub's viewer does, or taken from the Hub's auto-converted parquet branch for a repo without
  parquet files (:mod:`~pygestor.pipelines.huggingface.layout`).
- the dataset is pinned: ``dataset.revision`` (and the ``revision`` option) is the commit sha of
  the requested revision (``main`` by default); every partition records its file's path, size,
  sha256 (LFS) and git blob id.
- partitions are planned from file sizes alone: a file of ``S`` bytes becomes
  ``ceil(S / partition_size)`` partitions, piece ``k`` of ``n`` being the ``k``-th of ``n`` equal
  byte shares of the file's row groups, resolved to row ranges from the footer at download time.
  No request per file when adding (wikimedia/wikipedia has thousands of files); row counts are
  filled in as partitions are downloaded.

Fetch: the upstream file is downloaded once and verified
(:mod:`~pygestor.pipelines.huggingface.transfer`), then the piece's rows are re-written through
:meth:`~pygestor.pipelines.base.Pipeline.open_writer` (a
:class:`~pygestor.pipelines.formats.PartitionWriter` that stamps the file's provenance) with page
checksums verified on read.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from typing import TYPE_CHECKING, Any, ClassVar

from pygestor.catalog import Dataset, Partition, Subset
from pygestor.config import SECRET_KEY_PATTERN
from pygestor.errors import ConfigError, SourceError
from pygestor.pipelines import formats
from pygestor.pipelines.base import Pipeline, Progress
from pygestor.pipelines.huggingface import hub, transfer
from pygestor.pipelines.huggingface.layout import (
    CONVERT_REF,
    SHA,
    SubsetPlan,
    files_of,
    map_files,
    names,
    parse_repo_url,
    piece_rows,
    plan_order,
    safe_subset_name,
    unique,
    yaml_configs,
)

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("pygestor.huggingface")


class HuggingFaceParquetPipeline(Pipeline):
    """A dataset repo on the Hugging Face Hub: configs and splits become subsets.

    Options: see ``OPTIONS``. A URL may also carry the revision (``hf://datasets/o/n@rev``,
    ``.../tree/<rev>``) and a folder (``hf://datasets/o/n/20231101.en``: only files below it).
    """

    name: ClassVar[str] = "HuggingFaceParquet"
    description: ClassVar[str] = "a Hugging Face Hub dataset repo (parquet files, or the Hub's " \
                                 "auto-converted parquet branch)"
    #: options this pipeline understands (subclasses list theirs)
    OPTIONS: ClassVar[dict[str, str]] = {
        "revision": "branch, tag or commit sha to pin (default main); stored as the commit sha",
        "configs": "only these configs (a list, or a comma-separated string)",
        "splits": "only these splits (a list, or a comma-separated string)",
    }
    #: refresh and merge_update are implemented: ``download --update`` works
    tracks_revisions: ClassVar[bool] = True

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        # the shared copies go away with the pipeline object (end of a download) or the process
        self._copies = transfer.SharedCopies()

    @classmethod
    def accepts(cls, url: str) -> bool:
        lowered = url.lower()
        return "huggingface.co/datasets/" in lowered or lowered.startswith("hf://datasets/")

    def check_url(self, url: str | None) -> None:
        """Refuse, before any request, a URL that is not a Hub dataset URL. No URL is left to
        :meth:`discover`: the dataset name or :meth:`default_url` may stand in for it."""
        if url:
            parse_repo_url(url)

    # ------------------------------------------------------------------ hooks for subclasses
    def default_url(self, name: str) -> str | None:
        """The source when ``add`` gets no URL (here: the dataset name as ``owner/name``)."""
        return name if "/" in name else None

    def keep(self, config: str, split: str, options: dict[str, Any]) -> bool:
        """Whether a config/split is part of the dataset (``configs``/``splits`` options)."""
        configs, splits = names(options.get("configs")), names(options.get("splits"))
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
        self.check_options(options)
        self.check_url(url)
        source = url or self.default_url(name)
        if not source:
            raise ConfigError(f"the {self.name} pipeline needs a URL "
                              "(https://huggingface.co/datasets/owner/name) or a name owner/name")
        repo, url_revision, prefix = parse_repo_url(source)
        requested = str(options.get("revision") or url_revision or "main")
        info, plans, ignored, converted, tracking = self._find_plans(repo, requested, prefix,
                                                                     options)
        if info.gated and not hub.token_available():
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
            subset_name = unique(safe_subset_name(self.subset_name(plan.config, plan.split)),
                                 used)
            dataset.subsets[subset_name] = self._plan_subset(subset_name, plan, repo, info.sha,
                                                             partition_size)
        self.describe(dataset, info)
        return dataset

    def _find_plans(self, repo: str, requested: str, prefix: str, options: dict[str, Any]
                    ) -> tuple[Any, list[SubsetPlan], list[str], bool, str]:
        """The subsets of ``repo`` at ``requested``, from the auto-converted branch when not
        every data file of the revision is parquet: ``(the Hub's dataset info, plans, files left
        out, whether from the converted branch, the branch the dataset tracks)``."""
        info = self.dataset_info(repo, requested)
        tracking = "main" if SHA.match(requested) else requested
        converted = requested == CONVERT_REF
        plans, ignored, complete, found = self._plan_files(info, converted, prefix, options)
        if not converted and not complete:
            converted_info = self._converted_info(repo, requested, bool(plans))
            if converted_info is not None:
                plan = self._plan_files(converted_info, True, prefix, options)
                if plan[0]:
                    plans, ignored, _, found = plan
                    info, converted, tracking = converted_info, True, CONVERT_REF
        self._check_filters(found, options)
        if not plans:
            raise SourceError(f"no parquet files of {repo} at {requested} match "
                              f"{_filters_text(options, prefix)}")
        return info, plans, ignored, converted, tracking

    def _converted_info(self, repo: str, requested: str, have_plans: bool) -> Any:
        """The auto-converted branch's dataset info, or None when the repo has none (an error
        when the revision has nothing usable either)."""
        try:
            return self.dataset_info(repo, CONVERT_REF)
        except SourceError as exc:
            if getattr(exc, "transient", False):
                raise
            if have_plans:
                return None
            raise SourceError(
                f"{repo} at {requested} has no parquet files this pipeline can use and no "
                "auto-converted parquet branch (refs/convert/parquet); use the files "
                "pipeline for other formats") from None

    def check_options(self, options: dict[str, Any]) -> None:
        """Refuse a token passed as an option (it would be stored), then unknown options."""
        secret = [k for k in options if SECRET_KEY_PATTERN.search(k)]
        if secret:
            raise ConfigError(f"do not pass {', '.join(secret)} as an option: set HF_TOKEN or log "
                              "in with 'hf auth login'; tokens are read when needed and never "
                              "stored")
        super().check_options(options)

    def dataset_info(self, repo: str, revision: str) -> Any:
        """One ``dataset_info(files_metadata=True)`` call, with retries and clear errors."""
        return hub.dataset_info(repo, revision, self.settings)

    def _plan_files(self, info: Any, converted: bool, prefix: str, options: dict[str, Any]
                    ) -> tuple[list[SubsetPlan], list[str], bool, set[tuple[str, str]]]:
        """Subsets of one revision: (plans, files left out, every data file is parquet, every
        (config, split) found before filtering)."""
        files = files_of(info)
        configs = None if converted else yaml_configs(info.card_data)
        mapping, ignored, complete, partial = map_files(files, configs, converted)
        plans: list[SubsetPlan] = []
        for (config, split), paths in mapping.items():
            if prefix:
                paths = [p for p in paths if p == prefix or p.startswith(prefix.rstrip("/") + "/")]
            if not paths or not self.keep(config, split, options):
                continue
            plans.append(SubsetPlan(config, split, [files[p] for p in sorted(paths)],
                                    partial=f"{config}\0{split}" in partial))
        if not configs:
            plans.sort(key=plan_order)
        return plans, ignored, complete, set(mapping)

    def _check_filters(self, found: set[tuple[str, str]], options: dict[str, Any]) -> None:
        """A clear error for ``configs``/``splits`` options naming what the repo lacks."""
        if not found:
            return
        for key, index in (("configs", 0), ("splits", 1)):
            wanted = names(options.get(key))
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
        download = functools.partial(self.download_file, repo, revision, source,
                                     progress=progress)
        with self._copies.piece(folder, repo, revision, source, download) as local:
            self._write_piece(local, dest, dataset, subset, partition)

    def _write_piece(self, local: str, dest: str, dataset: Dataset, subset: Subset,
                     partition: Partition) -> None:
        """Write the rows of ``partition``'s piece of the upstream file ``local`` to ``dest``."""
        import fsspec

        source = partition.source
        fs = fsspec.filesystem("file")
        pf = formats.open_parquet(fs, local)
        try:
            start, stop = piece_rows(pf.metadata, int(source.get("piece", 0)),
                                     int(source.get("pieces", 1)))
            schema = pf.schema_arrow
        finally:
            pf.close()
        writer = self.open_writer(dest, schema, dataset, subset, partition)
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

    # ------------------------------------------------------------------ preview
    def preview(self, dataset: Dataset, subset: Subset, rows: int) -> pa.Table:
        """The first rows of the subset's first partition, read from the Hub with ranged reads
        at the pinned commit (``HfFileSystem``): the file's footer, then the row group holding
        the piece's first rows. A range cannot be checked against the file's sha256 (a download
        checks it); page checksums are verified where the file has them."""
        if not subset.partitions:
            raise SourceError(f"subset {subset.name!r} of {dataset.name} has no partitions")
        from pygestor.pipelines.files import source_filesystem

        source = subset.partitions[0].source
        fs, path = source_filesystem(source["url"], {}, self.settings)
        start = 0  # a subset's first partition is the first piece of its first file
        if int(source.get("piece", 0)):
            pf = formats.open_parquet(fs, path)
            try:
                start = piece_rows(pf.metadata, int(source["piece"]),
                                   int(source.get("pieces", 1)))[0]
            finally:
                pf.close()
        return formats.first_parquet_rows(fs, path, start, rows)

    def download_file(self, repo: str, revision: str, source: dict[str, Any], path: str,
                      progress: Progress) -> None:
        """Download one upstream file to ``path`` and verify its size and hash.

        A partial ``path`` left by a failed attempt is resumed with a ``Range`` request.
        """
        transfer.download_file(repo, revision, source, path, progress, self.settings.timeout)

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
                    new.copy_stored(part)
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


def _filters_text(options: dict[str, Any], prefix: str) -> str:
    parts = [f"{k}={options[k]!r}" for k in sorted(options) if k != "revision"]
    if prefix:
        parts.append(f"path {prefix!r}")
    return ", ".join(parts) or "(no filter)"
