"""Validation of dataset, subset and partition names (pure, no I/O)."""

from __future__ import annotations

import re

from pygestor.errors import InvalidNameError

MAX_NAME_LENGTH = 200
MAX_SEGMENT_LENGTH = 100
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-=+ ]*")
#: names Pygestor uses itself inside a dataset folder
RESERVED = {"metadata.json", "_pygestor"}


def _check_segments(kind: str, name: str, max_segments: int | None) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{kind} name is {len(name)} characters long; "
                               f"the limit is {MAX_NAME_LENGTH}")
    shown = name if len(name) <= 80 else name[:77] + "..."
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidNameError(f"{kind} name {shown!r} contains control characters; "
                               "use letters, digits, '-', '_', '.', '='")
    if "\\" in name:
        raise InvalidNameError(f"{kind} name {shown!r} contains a backslash; use '/' "
                               "to separate levels")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise InvalidNameError(f"{kind} name {shown!r} is an absolute path; use a relative "
                               "name like 'owner/name'")
    if "://" in name:
        raise InvalidNameError(f"{kind} name {shown!r} looks like a URL; pass the URL "
                               "separately and give the dataset a short name")
    segments = name.split("/")
    if max_segments is not None and len(segments) > max_segments:
        raise InvalidNameError(f"{kind} name {shown!r} has more than {max_segments} "
                               "'/'-separated parts")
    for seg in segments:
        if seg in ("", ".", ".."):
            raise InvalidNameError(f"{kind} name {shown!r} contains an empty, '.' or '..' "
                                   "part; names cannot leave their folder")
        if seg in RESERVED or not _SEGMENT.fullmatch(seg) or len(seg) > MAX_SEGMENT_LENGTH:
            raise InvalidNameError(
                f"{kind} name {shown!r}: part {seg[:40]!r} is not allowed; parts start with a "
                "letter, digit or '_' and hold letters, digits, '-', '_', '.', '=', '+' "
                f"or spaces (at most {MAX_SEGMENT_LENGTH} characters)")
    return name


def check_dataset_name(name: str) -> str:
    """A dataset name: one or two parts (``mnist``, ``wikimedia/wikipedia``)."""
    return _check_segments("dataset", name, max_segments=2)


def check_subset_name(name: str) -> str:
    """A subset name: one or more parts (``train``, ``20231101.en``, ``default/train``)."""
    return _check_segments("subset", name, max_segments=4)


def check_partition_name(name: str) -> str:
    """A partition file name: one part ending in ``.parquet``."""
    _check_segments("partition", name, max_segments=1)
    if not name.endswith(".parquet"):
        raise InvalidNameError(f"partition name {name!r} must end in .parquet")
    return name


def check_reference(ref: str) -> str:
    """A reference string: ``dataset[/subset[/partition]]``."""
    return _check_segments("reference", ref, max_segments=None)
