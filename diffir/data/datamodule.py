"""The Lightning DataModule: builds the train/val datasets from Hydra configs and wraps them in loaders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hydra
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from diffir.data.batch_sampler import ShardSampler, StepBatchSampler

DatasetSpec = Dataset | Mapping[str, Any]


def _build(spec: DatasetSpec) -> Dataset:
    """A dataset, or a Hydra ``_target_`` config of one (a dict or a DictConfig)."""
    if not isinstance(spec, Mapping):
        return spec
    if "_target_" not in spec:
        raise ValueError(f"a dataset config needs a _target_, got keys {sorted(spec)}")
    # Build the nested configs (the degradation) but call the dataset ourselves, so its own errors (a missing
    # folder: FileNotFoundError) reach the caller unwrapped by Hydra's InstantiationException.
    return hydra.utils.instantiate(spec, _partial_=True)()


class RestorationDataModule(LightningDataModule):
    """Train and val loaders over restoration datasets.

    ``train`` and ``val`` are datasets or Hydra configs of them, built in ``setup``. The train loader gives
    shuffled full batches of ``batch_size``: epoch-wise ``shuffle`` + ``drop_last`` by default, or, with
    ``max_steps``, a ``StepBatchSampler`` whose batch at each step depends only on ``(seed, step, rank)`` (so
    a resumed run sees the same data as an uninterrupted one; it starts at the trainer's ``global_step``).
    The val loader keeps order and uses ``val_batch_size`` (default 1: validation images differ in size);
    under DDP each process validates its own shard (``ShardSampler``).
    """

    def __init__(
        self,
        train: DatasetSpec | None = None,
        val: DatasetSpec | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        persistent_workers: bool = False,
        pin_memory: bool = False,
        val_batch_size: int = 1,
        max_steps: int | None = None,
        seed: int = 0,
        progressive: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        self.train_spec = train
        self.val_spec = val
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers and num_workers > 0
        self.pin_memory = pin_memory
        self.val_batch_size = val_batch_size
        self.max_steps = max_steps
        self.seed = seed
        self.progressive = progressive
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_spec is not None and self.train_set is None and stage in (None, "fit"):
            self.train_set = _build(self.train_spec)
            if self.max_steps is None and len(self.train_set) < self.batch_size:
                raise ValueError(
                    f"the training set has {len(self.train_set)} items, fewer than "
                    f"batch_size={self.batch_size}, so drop_last leaves no batch; raise the dataset's repeat "
                    "or lower batch_size"
                )
        if self.val_spec is not None and self.val_set is None and stage in (None, "fit", "validate"):
            self.val_set = _build(self.val_spec)

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
            **kwargs,
        )

    def _start_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError("no training dataset: pass `train` to RestorationDataModule and call setup()")
        if self.max_steps is None:
            return self._loader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True)
        trainer = self.trainer
        sampler = StepBatchSampler(
            len(self.train_set),
            self.batch_size,
            self.max_steps,
            seed=self.seed,
            start_step=self._start_step,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            progressive=self.progressive,
        )
        return self._loader(self.train_set, batch_sampler=sampler)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []  # no validation set: Lightning skips validation
        trainer = self.trainer
        sampler = (
            ShardSampler(len(self.val_set), trainer.global_rank, trainer.world_size)
            if trainer is not None and trainer.world_size > 1
            else None
        )
        return self._loader(self.val_set, batch_size=self.val_batch_size, shuffle=False, sampler=sampler)
