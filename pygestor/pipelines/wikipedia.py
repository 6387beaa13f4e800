"""The ``wikipedia`` pipeline: Wikipedia dumps from the Hub's ``wikimedia/wikipedia`` repo.

An example of a custom pipeline built on another one. It changes only what is specific to the
source, through the hooks of :class:`~pygestor.pipelines.huggingface.HuggingFaceParquetPipeline`:

- the source URL defaults to the repo, so ``pygestor add wiki --pipeline wikipedia`` is enough;
- one subset per dump date and language (``20231101.en``), not ``<config>/<split>``: the repo's
  configs are ``<date>.<language>`` and each has a single ``train`` split;
- ``languages`` and ``dates`` options pick the subsets (the repo has 300+ languages);
- the description, the modality (``text``) and the license are filled in.

Everything else (pinning to a commit, downloading, verifying, re-partitioning large files,
updates) is inherited. See ``docs/pipelines.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pygestor.catalog import Dataset
from pygestor.pipelines.huggingface import HuggingFaceParquetPipeline, names

REPO = "wikimedia/wikipedia"


class WikipediaPipeline(HuggingFaceParquetPipeline):
    """Wikipedia articles (one row per article: id, url, title, text) by dump date and language.

    Options: see ``OPTIONS``.
    """

    name: ClassVar[str] = "wikipedia"
    description: ClassVar[str] = "Wikipedia dumps (wikimedia/wikipedia): one subset per dump " \
                                 "date and language"
    OPTIONS: ClassVar[dict[str, str]] = {
        "languages": "Wikipedia language codes to keep (['en', 'fr'] or 'en,fr')",
        "dates": "dump dates to keep (['20231101'])",
        "revision": HuggingFaceParquetPipeline.OPTIONS["revision"],
    }

    @classmethod
    def accepts(cls, url: str) -> bool:
        return REPO in url.lower()

    def default_url(self, name: str) -> str | None:
        return f"https://huggingface.co/datasets/{REPO}"

    def keep(self, config: str, split: str, options: dict[str, Any]) -> bool:
        date, _, language = config.partition(".")
        languages, dates = names(options.get("languages")), names(options.get("dates"))
        return (not languages or language in languages) and (not dates or date in dates)

    def subset_name(self, config: str, split: str) -> str:
        return config if split == "train" else f"{config}/{split}"

    def describe(self, dataset: Dataset, info: Any) -> None:
        super().describe(dataset, info)
        dataset.description = ("Wikipedia articles from the Wikimedia dumps, cleaned of markup: "
                               "one row per article (id, url, title, text); one subset per dump "
                               "date and language, e.g. 20231101.en")
        dataset.modality = "text"
        dataset.license = dataset.license or "cc-by-sa-3.0, gfdl"
        for subset in dataset.subsets.values():
            date, _, language = str(subset.extra.get("config", "")).partition(".")
            subset.description = f"Wikipedia in '{language}', dump of {date}"
