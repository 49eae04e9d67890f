"""Step-indexed training batches: what a step sees depends only on (seed, step, rank).

A resumed run therefore sees exactly the batches, crops, flips and degradations an uninterrupted run would
have seen, without saving any sampler or worker random state. Each key handed to the dataset is
``(index, sample_seed, patch_size)``; the dataset draws all of that sample's randomness from ``sample_seed``.

Validation under DDP is sharded by :class:`ShardSampler` (every image once, no padding), and the metrics are
reduced over the per-image values (``MetricSuite.compute``), so 1 and N processes report the same numbers.

Progressive learning (Restormer / DiffIR deblurring) is a schedule of phases, each with its own batch and
patch size: ``progressive={"steps": [92000, 80000, ...], "batch_sizes": [8, 4, ...], "patch_sizes": [...]}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler


@dataclass(frozen=True)
class Phase:
    start: int  # first step of the phase
    batch_size: int  # per process
    patch_size: int | None  # None: the dataset's own
    first_position: int  # global sample position at the phase's first step


def phases(
    batch_size: int, world_size: int, progressive: Mapping[str, Sequence[int]] | None = None
) -> list[Phase]:
    """The phases of a run; without ``progressive`` one phase with ``batch_size`` from step 0."""
    if not progressive:
        return [Phase(0, batch_size, None, 0)]
    steps, sizes, patches = (list(progressive[k]) for k in ("steps", "batch_sizes", "patch_sizes"))
    if not len(steps) == len(sizes) == len(patches) or not steps:
        raise ValueError(
            "progressive: steps, batch_sizes and patch_sizes must be non-empty lists of equal length"
        )
    result, start, position = [], 0, 0
    for length, size, patch in zip(steps, sizes, patches, strict=True):
        result.append(Phase(start, int(size), int(patch), position))
        start, position = start + int(length), position + int(length) * int(size) * world_size
    return result


class StepBatchSampler(Sampler[list[tuple[int, int, int | None]]]):
    """Yields the batches of steps ``start_step() .. max_steps - 1``.

    Samples are drawn epoch by epoch without replacement (a fresh permutation of the dataset per epoch,
    seeded by (seed, epoch)); under DDP each rank takes its own slice of the global batch. After the last
    progressive phase ends, its sizes continue.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        max_steps: int,
        seed: int = 0,
        start_step: Callable[[], int] | int = 0,
        rank: int = 0,
        world_size: int = 1,
        progressive: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        if dataset_size <= 0:
            raise ValueError("the training dataset is empty")
        self.dataset_size, self.max_steps = dataset_size, max_steps
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.phases = phases(batch_size, world_size, progressive)
        self._start_step = start_step
        self._permutations: dict[int, np.ndarray] = {}

    def start_step(self) -> int:
        return self._start_step() if callable(self._start_step) else self._start_step

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            self._permutations = {
                epoch: np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)
            }
        return self._permutations[epoch]

    def phase(self, step: int) -> Phase:
        return next(p for p in reversed(self.phases) if p.start <= step)

    def batch(self, step: int) -> list[tuple[int, int, int | None]]:
        """The (index, sample seed, patch size) keys of this rank at ``step``."""
        phase = self.phase(step)
        first = phase.first_position + ((step - phase.start) * self.world_size + self.rank) * phase.batch_size
        keys = []
        for position in range(first, first + phase.batch_size):
            epoch, offset = divmod(position, self.dataset_size)
            sample_seed = int(np.random.default_rng([self.seed, position, 1]).integers(2**62))
            keys.append((int(self._permutation(epoch)[offset]), sample_seed, phase.patch_size))
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, int, int | None]]]:
        for step in range(self.start_step(), self.max_steps):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step())


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...``: each process validates its own images, each image exactly once.

    Unlike ``DistributedSampler`` nothing is padded (a repeated image would count twice in the mean); shards
    differ by one image at most. Every rank needs at least one image (DDP's first forward syncs buffers).
    """

    def __init__(self, dataset_size: int, rank: int = 0, world_size: int = 1) -> None:
        if dataset_size < world_size:
            raise ValueError(
                f"the validation set has {dataset_size} images, fewer than the {world_size} processes: "
                "add images or use fewer devices"
            )
        self.indices = range(rank, dataset_size, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
