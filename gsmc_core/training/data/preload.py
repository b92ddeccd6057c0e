"""A split decoded once into memory, and the loader that batches and augments it there.

FERPlus at 64 px is 28k x 64 x 64 x 3 bytes (350 MB): decoding it once and augmenting whole
batches with tensor operations (``batch_augment``) leaves the CPU to the model, where loader
workers decoding PNGs every epoch would compete with it on a small machine.
"""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from gsmc_core.checkpoint import Checkpoint, ModelMeta
from gsmc_core.errors import UsageError
from gsmc_core.preprocess import prepare_image
from gsmc_core.training.data.batch_augment import normalize, to_float
from gsmc_core.training.data.readers import checkpoint_split
from gsmc_core.training.data.samples import Batch, DataError, Split, Unreadable, load_image

BatchAugment = Callable[[torch.Tensor, ModelMeta, torch.Generator], torch.Tensor]
STOP_EVERY = 64  # images decoded between two looks at a stop request (~0.05 s at 65 px)


@dataclass
class Preloaded:
    """The readable images of a split at the model's input size (N x S x S x 3 uint8), their
    labels, the split index of each, and the samples that could not be read."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    unreadable: list[Unreadable]


def preload_split(split: Split, meta: ModelMeta, strict: bool = False,
                  should_stop: Callable[[], bool] | None = None) -> Preloaded | None:
    """Decode every sample of ``split`` as the model sees it (``prepare_image``); None when
    ``should_stop`` says so (asked every ``STOP_EVERY`` images: a large dataset takes minutes).

    Unreadable images are listed (or raise with ``strict``); if none can be read, DataError
    names the split and the first failures.
    """
    size = meta.input_size
    images = np.empty((len(split.samples), size, size, 3), dtype=np.uint8)
    kept: list[int] = []
    unreadable: list[Unreadable] = []
    for i, sample in enumerate(split.samples):
        if should_stop is not None and i % STOP_EVERY == 0 and should_stop():
            return None
        try:
            images[len(kept)] = prepare_image(load_image(sample), meta)
        except DataError as exc:
            if strict:
                raise
            unreadable.append(Unreadable(sample.key, str(exc)))
            continue
        kept.append(i)
    if not kept:
        first = "; ".join(u.reason for u in unreadable[:3])
        raise DataError(f"none of the {len(split.samples)} {split.name} images of {split.dataset} "
                        f"could be read (first: {first})")
    labels = torch.tensor([split.samples[i].label for i in kept], dtype=torch.long)
    return Preloaded(torch.from_numpy(images[: len(kept)]), labels,
                     torch.tensor(kept, dtype=torch.long), unreadable)


def batch_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """The seed of one batch's augmentation (and, with batch -1, of the epoch's order)."""
    return (((seed * 1_000_003 + epoch) * 10_007 + batch + 1) * 101 + rank) % 2**63


class MemoryLoader:
    """Batches of a ``Preloaded`` split as ``samples.Batch``, like a DataLoader of it.

    Training (``augment`` given): a new order every epoch (``set_epoch``, seeded), each rank of
    a torchrun job taking an equal share, the last incomplete batch dropped when there is more
    than one, and the batch augmented by ``augment``. Evaluation: in order, normalised only.
    The unreadable images are reported as ``skipped`` in each epoch's first batch.
    """

    def __init__(self, data: Preloaded, meta: ModelMeta, batch_size: int,
                 augment: BatchAugment | None = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.data = data
        self.meta = meta
        self.batch_size = batch_size
        self.augment = augment
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.sampler = self  # what train_one_epoch calls set_epoch on

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _share(self) -> int:
        return len(self.data.labels) // self.world_size if self.augment else len(self.data.labels)

    def __len__(self) -> int:
        n = self._share()
        if self.augment and n > self.batch_size:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def _order(self) -> torch.Tensor:
        n = len(self.data.labels)
        if not self.augment:
            return torch.arange(n)
        gen = torch.Generator().manual_seed(batch_seed(self.seed, self.epoch, -1, 0))
        order = torch.randperm(n, generator=gen)
        share = self._share()
        return order[: share * self.world_size][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[Batch]:
        return self.batches_from(0)

    def batches_from(self, first: int) -> Iterator[Batch]:
        """The epoch's batches from batch ``first`` (counting from 0) on, the same as in a
        whole pass (a stopped epoch resumed goes on where it ended)."""
        order = self._order()
        for b in range(first, len(self)):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            images = self.data.images[rows]
            if self.augment:
                gen = torch.Generator().manual_seed(batch_seed(self.seed, self.epoch, b, self.rank))
                x = self.augment(images, self.meta, gen)
            else:
                x = normalize(to_float(images), self.meta)
            # every rank holds the whole list: one reports it (the ranks' counts are summed)
            failed = tuple(self.data.unreadable) if b == 0 and self.rank == 0 else ()
            yield Batch(x, self.data.labels[rows], self.data.indices[rows], len(failed), failed)


CALIBRATION_FACES = 1000  # validation faces whose activations set the int8 ranges (frames.quantize)


def calibration_faces(ckpt: Checkpoint, dataset: str, data_root: str | os.PathLike,
                      faces: int = CALIBRATION_FACES) -> list[npt.NDArray[np.float32]]:
    """Batches of ``faces`` validation faces of ``dataset``, preprocessed as the model sees them
    (the same random subset for the same dataset). A dataset without its own validation split:
    the faces the model's run held out (``checkpoint_split``), never faces it trained on."""
    split = checkpoint_split(ckpt, dataset, str(data_root), "val").subset(faces, 0)
    loader = MemoryLoader(preload_split(split, ckpt.meta), ckpt.meta, 32)
    batches = [batch.images.numpy() for batch in loader]
    if not batches:
        raise UsageError(f"{data_root}: no readable {dataset} validation faces to calibrate on")
    return batches
