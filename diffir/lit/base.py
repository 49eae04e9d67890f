"""What both training stages share: manual optimisation, EMA, validation, image panels, model records.

Optimisation is manual because stage 2 switches optimisers (the official warm-up trains CPEN_S2 and the
denoiser with their own optimiser for ``encoder_iter`` steps). Every random draw of a training step is
seeded from (seed, step, rank), so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from ..checkpoint import model_record
from ..inference import restore, start_noise
from ..models import DiffIRS1, DiffIRS2
from .images import log_panels, panel


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the step was not applied, the last good checkpoint is kept."""


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A seed for one training step of one process, independent of how the run was interrupted."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


class RestorationModule(L.LightningModule):
    """Base LightningModule: ``compute_losses`` and ``predict`` are what a stage defines."""

    def __init__(
        self,
        net: DiffIRS1 | DiffIRS2,
        model_config: dict[str, Any],
        losses: Mapping[str, nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        metrics: nn.Module | None = None,
        ema_decay: float = 0.999,
        seed: int = 0,
        grad_clip: float | None = None,
        val_panels: int = 4,
        run_dir: str = ".",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.net_ema = copy.deepcopy(net).requires_grad_(False).eval() if ema_decay > 0 else None
        self.model_config = dict(model_config)
        self.losses = nn.ModuleDict(dict(losses))
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.metrics = metrics
        self.ema_decay, self.seed, self.grad_clip = ema_decay, seed, grad_clip
        self.val_panels, self.run_dir = val_panels, run_dir
        self._panels: list[torch.Tensor] = []
        self.scale = int(model_config.get("scale", 1)) if model_config.get("task") == "sr" else 1

    # --- what a stage defines -------------------------------------------------------------------------
    def compute_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, net: nn.Module, batch: dict[str, torch.Tensor], index: int) -> torch.Tensor:
        raise NotImplementedError

    def optimizer_index(self, step: int) -> int:
        """Which optimiser (from ``configure_optimizers``) takes this step."""
        return 0

    # --- optimisation ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=[p for p in self.net.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer)},
        }

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        step = self.global_step
        torch.manual_seed(step_seed(self.seed, step, self.global_rank))
        terms = self.compute_losses(batch)
        total = sum(v for k, v in terms.items() if not k.startswith("log_"))
        self._check_finite(total, terms, step)

        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        optimizer = optimizers[self.optimizer_index(step)]
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if self.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()  # all schedulers advance every iteration, as BasicSR does
        self.update_ema()

        batch_size = batch["gt"].shape[0]
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=batch_size)
        self.log_dict(
            {f"train/{k.removeprefix('log_')}": v.detach() for k, v in terms.items()},
            prog_bar=False,
            batch_size=batch_size,
        )
        self.log("train/lr", optimizer.param_groups[0]["lr"], batch_size=batch_size)
        return total.detach()

    def _check_finite(self, total: torch.Tensor, terms: dict[str, torch.Tensor], step: int) -> None:
        if math.isfinite(total.item()):
            return
        bad = ", ".join(f"{k}={v.item()}" for k, v in terms.items() if not math.isfinite(v.item()))
        raise NonFiniteLossError(
            f"non-finite loss at step {step} ({bad}); the step was not applied. The last good checkpoint is in "
            f"{self.run_dir}/checkpoints (resume with resume=auto, maybe with a lower learning rate)"
        )

    @torch.no_grad()
    def update_ema(self) -> None:
        """``ema = d·ema + (1-d)·param`` over parameters (BasicSR averages parameters only)."""
        if self.net_ema is None:
            return
        for ema, param in zip(self.net_ema.parameters(), self.net.parameters(), strict=True):
            ema.lerp_(param.detach(), 1.0 - self.ema_decay)

    @property
    def eval_net(self) -> DiffIRS1 | DiffIRS2:
        """The network used for validation and released: the EMA copy when there is one."""
        return self.net_ema if self.net_ema is not None else self.net

    # --- validation -----------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._panels = []
        if self.metrics is not None:
            self.metrics.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        net = self.eval_net.eval()
        out = self.predict(net, batch, batch_idx).clamp(0, 1)
        if self.metrics is not None:
            self.metrics.update(out, batch["gt"], names=list(batch.get("name", [])) or None)
        if len(self._panels) < self.val_panels:
            self._panels.append(panel(batch["lq"][:1], [out[:1]], batch["gt"][:1]))

    def on_validation_epoch_end(self) -> None:
        if self.metrics is not None:
            values = self.metrics.compute()
            self.log_dict({f"val/{k}": float(v) for k, v in values.items()}, prog_bar=True, sync_dist=True)
        if self._panels and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            log_panels(self._panels, self.loggers, self.global_step, self.run_dir)

    def restore_batch(
        self, net: nn.Module, lq: torch.Tensor, gt: torch.Tensor | None, index: int
    ) -> torch.Tensor:
        """Any-size restoration; stage 2 starts its reverse diffusion from a noise vector seeded by the image
        index, so validation scores do not change between evaluations of the same weights."""
        noise = start_noise(net, lq.shape[0], self.seed + index, lq.device)
        return restore(net, lq, gt=gt, noise=noise, scale=self.scale)

    # --- checkpoints ----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint carries a self-describing model record (the EMA weights) for eval / infer / stage 2."""
        checkpoint["diffir_model"] = model_record(self.model_config, self.eval_net.state_dict())
