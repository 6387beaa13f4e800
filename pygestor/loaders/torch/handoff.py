"""Hand-off stage: how ready batches cross from a DataLoader worker to the main process.

Moving a tensor between processes costs about the same whatever its size (a shared memory
segment and a file descriptor each). :class:`Bundle` carries several batches as one DataLoader
item whose tensors travel packed in ONE buffer;
:class:`~pygestor.loaders.torch.loader.PygestorDataLoader`
opens bundles, so users only ever see ordinary batches. :func:`keep_batch` is the ``collate_fn``
that hands ready batches over unchanged.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from pygestor.loaders.torch import Batch

__all__ = ["Bundle", "keep_batch"]


class _Slot(NamedTuple):
    """Where one tensor of a packed bundle lives in the bundle's buffer."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int


class Bundle:
    """Several ready batches handed from a DataLoader worker to the main process as one item.

    Moving a tensor between processes costs about the same whatever its size (a shared memory
    segment and a file descriptor each), so when a bundle is pickled in the worker every tensor
    of every batch is copied into ONE buffer tensor; unpickling in the main process gives the
    batches back as views of that buffer. :class:`PygestorDataLoader` opens bundles, so users
    only ever see ordinary batches.
    """

    __slots__ = ("batches",)

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _unpack_bundle, _pack_bundle(self.batches)

    def pin_memory(self) -> Bundle:
        from torch.utils.data._utils.pin_memory import pin_memory

        return Bundle([pin_memory(batch) for batch in self.batches])


class _Skeleton(NamedTuple):
    """A batch with its tensors replaced by slots of the bundle's buffer."""

    columns: dict[str, Any]
    is_batch: bool  # a Batch (else a dict)


def _pack_bundle(batches: list[Any]) -> tuple[torch.Tensor, list[Any]]:
    tensors: list[tuple[torch.Tensor, int]] = []
    skeletons: list[Any] = []
    total = 0
    for batch in batches:
        if not isinstance(batch, (dict, Batch)):
            skeletons.append(batch)
            continue
        skeleton = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) and value.device.type == "cpu" \
                    and not value.requires_grad and value.layout == torch.strided:
                value = value.contiguous()
                nbytes = value.numel() * value.element_size()
                tensors.append((value, total))
                skeleton[key] = _Slot(value.dtype, tuple(value.shape), total, nbytes)
                total += -(-nbytes // 64) * 64
            else:
                skeleton[key] = value
        skeletons.append(_Skeleton(skeleton, isinstance(batch, Batch)))
    buffer = torch.empty(total, dtype=torch.uint8)
    for value, offset in tensors:
        if value.numel():
            buffer[offset:offset + value.numel() * value.element_size()].copy_(
                value.reshape(-1).view(torch.uint8))
    return buffer, skeletons


def _unpack_bundle(buffer: torch.Tensor, skeletons: list[Any]) -> Bundle:
    batches = []
    for skeleton in skeletons:
        if isinstance(skeleton, _Skeleton):
            columns = {key: buffer[v.offset:v.offset + v.nbytes].view(v.dtype).view(v.shape)
                       if isinstance(v, _Slot) else v for key, v in skeleton.columns.items()}
            skeleton = Batch(columns) if skeleton.is_batch else columns
        batches.append(skeleton)
    return Bundle(batches)


def keep_batch(batch: Any) -> Any:
    """A ``collate_fn`` that hands ready batches over unchanged.

    PyTorch's default for ``batch_size=None`` (``default_convert``) walks every element of
    every list of a dict; ready batches from :class:`PygestorDataset` are
    :class:`~pygestor.loaders.torch.Batch` objects, which it passes through anyway, but a
    ``transform`` may return dicts.
    """
    return batch
