"""The ``HuggingFaceParquet`` pipeline: a dataset repo on the Hugging Face Hub.

One module per job:

- :mod:`.hub`: access to ``huggingface_hub`` (imported only when a call needs it) and its errors;
- :mod:`.layout`: Hub URLs and repo layouts -> subsets, and the row range of a piece (pure);
- :mod:`.transfer`: the verified download of one upstream file and the local copies its pieces
  share;
- :mod:`.pipeline`: :class:`HuggingFaceParquetPipeline` (discover, fetch, updates).

The names below are those this module had before it became a package.
"""

from __future__ import annotations

from pygestor.pipelines.huggingface.hub import hub_error, token_available
from pygestor.pipelines.huggingface.layout import (
    CONVERT_REF,
    SPLIT_KEYWORDS,
    HubFile,
    SubsetPlan,
    files_of,
    is_parquet,
    map_converted,
    map_layout,
    match_data_files,
    names,
    parse_repo_url,
    piece_rows,
    split_from_layout,
    yaml_configs,
)
from pygestor.pipelines.huggingface.pipeline import HuggingFaceParquetPipeline

#: the name pipelines built on this one imported (``names`` now)
_names = names

__all__ = ["CONVERT_REF", "SPLIT_KEYWORDS", "HubFile", "HuggingFaceParquetPipeline", "SubsetPlan",
           "files_of", "hub_error", "is_parquet", "map_converted", "map_layout",
           "match_data_files", "names", "parse_repo_url", "piece_rows", "split_from_layout",
           "token_available", "yaml_configs"]
