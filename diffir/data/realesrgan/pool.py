"""Real-ESRGAN's training-pair pool (``RealESRGANModel._dequeue_and_enqueue``): degraded pairs are mixed
across batches through a pool of ``queue_size`` pairs, shuffled once full (docs/method.md §4.2).

:class:`TrainingPairPool` is the pool half of :class:`~diffir.data.realesrgan.RealESRGANDegradation`; its
state (the filled part and the fill pointer) is the degradation's ``state_dict`` extra state, so a resumed
run repeats an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


class TrainingPairPool:
    """The pool of ``self.queue_size`` (LQ, GT) pairs, for an ``nn.Module`` that sets ``queue_size`` and calls
    ``_reset_pool()`` in its ``__init__``; ``_pool(lq, gt, order)`` passes a batch through it."""

    queue_size: int

    def _reset_pool(self) -> None:
        self.queue_lq: Tensor | None = None
        self.queue_gt: Tensor | None = None
        self.queue_ptr = 0

    def _pool(self, lq: Tensor, gt: Tensor, order: np.ndarray) -> tuple[Tensor, Tensor]:
        """Real-ESRGAN's ``_dequeue_and_enqueue``: fill the pool batch by batch (returning the batch itself);
        once full, shuffle it, hand out its first B pairs and put the new batch in their place."""
        b = lq.shape[0]
        if self.queue_lq is None:
            self.queue_lq = lq.new_zeros(self.queue_size, *lq.shape[1:])
            self.queue_gt = gt.new_zeros(self.queue_size, *gt.shape[1:])
        if self.queue_lq.shape[1:] != lq.shape[1:] or self.queue_gt.shape[1:] != gt.shape[1:]:
            raise ValueError(
                f"RealESRGANDegradation: the pool holds {tuple(self.queue_gt.shape[1:])} GT crops, got "
                f"{tuple(gt.shape[1:])}; keep gt_size fixed during a run"
            )
        self.queue_lq, self.queue_gt = self.queue_lq.to(lq.device), self.queue_gt.to(gt.device)
        if self.queue_ptr < self.queue_size:
            self.queue_lq[self.queue_ptr : self.queue_ptr + b] = lq
            self.queue_gt[self.queue_ptr : self.queue_ptr + b] = gt
            self.queue_ptr += b
            return lq, gt
        idx = torch.from_numpy(order).to(lq.device)
        self.queue_lq, self.queue_gt = self.queue_lq[idx], self.queue_gt[idx]
        lq_out, gt_out = self.queue_lq[:b].clone(), self.queue_gt[:b].clone()
        self.queue_lq[:b], self.queue_gt[:b] = lq, gt
        return lq_out, gt_out

    def get_extra_state(self) -> dict[str, Any]:
        """The pool (filled part) and its fill pointer, so a resumed run repeats an uninterrupted one."""
        if self.queue_lq is None:
            return {"queue_ptr": 0}
        n = self.queue_ptr
        return {"queue_ptr": n, "queue_lq": self.queue_lq[:n].clone(), "queue_gt": self.queue_gt[:n].clone()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._reset_pool()
        n = int(state.get("queue_ptr", 0))
        if n == 0:
            return
        if n > self.queue_size:
            raise ValueError(
                f"RealESRGANDegradation: checkpoint pool holds {n} pairs but queue_size={self.queue_size}"
            )
        lq, gt = state["queue_lq"], state["queue_gt"]
        self.queue_lq = lq.new_zeros(self.queue_size, *lq.shape[1:])
        self.queue_gt = gt.new_zeros(self.queue_size, *gt.shape[1:])
        self.queue_lq[:n], self.queue_gt[:n] = lq, gt
        self.queue_ptr = n
