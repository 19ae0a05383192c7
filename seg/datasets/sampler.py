"""An infinite training sampler whose every draw is a pure function of (seed, position).

Draw ``p`` of the global stream (all processes together) is sample ``perm_e[p mod n]`` with
``e = p // n`` and ``perm_e`` the permutation of epoch ``e`` seeded by ``(seed, e)``; process ``r``
of ``W`` takes the draws ``p = r, r + W, r + 2W, ...``. Each draw is yielded as
``(index, sample_seed)``, and the dataset reseeds its augmentation pipeline with ``sample_seed``
(derived from ``(seed, p)``) before transforming that sample. So the data order and the
augmentation of every step depend on nothing but the seed and the step: not on the number of
DataLoader workers, not on what ran before. Resuming at iteration ``i`` is :meth:`start_at`
with ``i * batch * W``: O(1), no batch is loaded to skip ahead.
"""
from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from seg.registry import DATA_SAMPLERS

__all__ = ['SeededInfiniteSampler', 'sample_seed']


def sample_seed(seed: int, position: int) -> int:
    """The augmentation seed of draw ``position`` of a stream seeded with ``seed`` (a 63-bit int)."""
    words = np.random.SeedSequence([seed, position]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


@DATA_SAMPLERS.register_module()
class SeededInfiniteSampler(Sampler):
    """Infinite, resumable, per-process slice of a seeded stream of ``(index, sample_seed)`` draws.

    Args:
        dataset: the dataset (only its length is used).
        shuffle: a new permutation every epoch (else 0, 1, ..., n - 1 over and over).
        seed: the stream's seed; ``None`` draws one shared by all processes.
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: int | None = None) -> None:
        self.rank, self.world_size = get_dist_info()
        self.size = len(dataset)
        if self.size < 1:
            raise ValueError('SeededInfiniteSampler: the dataset is empty')
        self.shuffle = bool(shuffle)
        self.seed = int(sync_random_seed() if seed is None else seed)
        self.start = 0

    def start_at(self, position: int) -> None:
        """Make the next iteration begin at draw ``position`` of the global stream."""
        if position < 0:
            raise ValueError(f'position must be >= 0, got {position}')
        self.start = int(position)

    def _permutation(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]))
        return torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # The first draw of this process at or after ``start``.
        position = self.start + (self.rank - self.start) % self.world_size
        while True:
            epoch = position // self.size
            perm = self._permutation(epoch)
            end = (epoch + 1) * self.size
            while position < end:
                yield perm[position - epoch * self.size], sample_seed(self.seed, position)
                position += self.world_size

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: the epoch is implied by the position."""
