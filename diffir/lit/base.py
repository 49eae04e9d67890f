"""The training and validation steps both training stages share (the stages define ``compute_losses`` and
``predict``); its parts live with what they act on: optimisers in :mod:`diffir.lit.optim`, the EMA in
:mod:`diffir.lit.ema`, the discriminator's update in :mod:`diffir.losses.adversary`, the on-device Real-ESRGAN
degradation in :mod:`diffir.data.realesrgan`, image panels in :mod:`diffir.lit.images`.

Optimisation is manual because stage 2 switches optimisers (the official warm-up trains CPEN_S2 and the
denoiser with their own optimiser for ``encoder_iter`` steps) and adversarial training alternates the
generator's and the discriminator's updates. Every random draw of a training step is seeded from
(seed, step, rank), so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch import nn

from ..checkpoint import model_record
from ..models import DiffIRS1, DiffIRS2
from ..restoration import composite, restore, start_noise
from .ema import ema_copy, update_ema
from .images import log_panels, panel
from .optim import build_optimizer, optimizer_entry

if TYPE_CHECKING:
    from ..data.realesrgan import RealESRGANDegradation
    from ..losses.adversary import Adversary


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the step was not applied, the last good checkpoint is kept."""


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A seed for one training step of one process, independent of how the run was interrupted."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


class RestorationModule(L.LightningModule):
    """Base LightningModule: ``compute_losses`` and ``predict`` are what a stage defines.

    Options every stage shares: an ``adversary`` (a discriminator and its losses, ``diffir.losses.adversary``)
    trained after each generator step with its own ``optimizer_d`` / ``scheduler_d``; a batch-wise
    ``degradation`` run on the device (Real-ESRGAN: the loader hands GT crops, the LQ is made here, seeded by
    the step); ``gt_usm``: the consumers (loss names, ``"gan"``, ``"teacher"``) that take the USM-sharpened GT.
    """

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
        adversary: Adversary | None = None,
        optimizer_d: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler_d: Callable[..., Any] | None = None,
        degradation: RealESRGANDegradation | None = None,
        gt_usm: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if adversary is not None and optimizer_d is None:
            raise ValueError("an adversary needs optimizer_d (the discriminator's optimiser)")
        self.automatic_optimization = False
        self.net = net
        self.net_ema = ema_copy(net, ema_decay)
        self.model_config = dict(model_config)
        self.losses = nn.ModuleDict(dict(losses))
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.metrics = metrics
        self.ema_decay, self.seed, self.grad_clip = ema_decay, seed, grad_clip
        self.val_panels, self.run_dir = val_panels, run_dir
        self._panels: list[torch.Tensor] = []
        self.scale = int(model_config.get("scale", 1)) if model_config.get("task") == "sr" else 1
        self.adversary, self.degradation, self.gt_usm = adversary, degradation, frozenset(gt_usm)
        self.optimizer_d_factory, self.scheduler_d_factory = optimizer_d, scheduler_d
        self._fake: torch.Tensor | None = None  # this step's output, detached, for the discriminator

    # --- what a stage defines -------------------------------------------------------------------------
    def compute_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, net: nn.Module, batch: dict[str, torch.Tensor], index: int) -> torch.Tensor:
        raise NotImplementedError

    def optimizer_index(self, step: int) -> int:
        """Which optimiser (from ``configure_optimizers``) takes this step."""
        return 0

    # --- optimisation ---------------------------------------------------------------------------------
    def generator_optimizers(self) -> list[dict]:
        """The generator's optimisers (``optimizer_index`` picks one per step)."""
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = build_optimizer(self.optimizer_factory, trainable)
        return [optimizer_entry(optimizer, self.scheduler_factory)]

    def configure_optimizers(self) -> Any:
        entries = self.generator_optimizers()
        if self.adversary is not None:  # the discriminator's comes last
            optimizer_d = build_optimizer(self.optimizer_d_factory, self.adversary.discriminator.parameters())
            entries.append(optimizer_entry(optimizer_d, self.scheduler_d_factory))
        return entries

    def target(self, consumer: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The GT a consumer compares with: USM-sharpened for those in ``gt_usm`` (RealSR V2), else plain."""
        return batch["gt_usm"] if consumer in self.gt_usm else batch["gt"]

    def image_losses(
        self, out: torch.Tensor, batch: dict[str, torch.Tensor], z: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The configured losses on the restored image, plus the adversary's generator terms."""
        mask = batch.get("mask")
        terms = {
            name: loss(out=out, gt=self.target(name, batch), mask=mask, z=z)
            for name, loss in self.losses.items()
        }
        if self.adversary is not None:
            terms.update(self.adversary.generator_terms(out, self.target("gan", batch), mask))
            self._fake = out.detach()
        return terms

    def degrade(self, batch: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
        """With a batch ``degradation``: the LQ (and paired GT crops, USM GT) made from the loader's GT, flipped
        at random in training (``RealESRGANDegradation.degrade_batch``)."""
        if self.degradation is None:
            return batch
        return self.degradation.degrade_batch(batch, seed, flip=self.training)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        step = self.global_step
        seed = step_seed(self.seed, step, self.global_rank)
        torch.manual_seed(seed)
        batch = self.degrade(batch, seed)
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        self._fake = None
        if self.adversary is not None:
            self.adversary.freeze()
        terms = self.compute_losses(batch)
        total = self.total_loss(terms, step)
        optimizer = optimizers[self.optimizer_index(step)]
        self.apply_update(optimizer, total)
        optimizer.step()
        if self._fake is not None:  # none during the stage-2 warm-up: the generator did not run
            terms.update(self.discriminator_step(batch, optimizers[-1], step))
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()  # all schedulers advance every iteration, as BasicSR does
        if self.net_ema is not None:
            update_ema(self.net_ema, self.net, self.ema_decay)

        batch_size = batch["gt"].shape[0]
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=batch_size)
        self.log_dict(
            {f"train/{k.removeprefix('log_')}": v.detach() for k, v in terms.items()},
            prog_bar=False,
            batch_size=batch_size,
        )
        self.log("train/lr", optimizer.param_groups[0]["lr"], batch_size=batch_size)
        return total.detach()

    def apply_update(self, optimizer: Any, loss: torch.Tensor) -> None:
        """Backward and clip into ``optimizer``'s parameters (the caller steps it)."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")

    def discriminator_step(
        self, batch: dict[str, torch.Tensor], optimizer: Any, step: int
    ) -> dict[str, torch.Tensor]:
        """The adversary's update (``Adversary.update``) on real (the GT) vs this step's output; returns its terms
        for the logs."""

        def apply(terms: dict[str, torch.Tensor]) -> None:
            self.apply_update(optimizer, self.total_loss(terms, step))
            # Through the strategy (precision plugin) but not LightningOptimizer.step, which would count a second
            # iteration: global_step counts generator steps, the official iteration count.
            self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=lambda: None)

        terms = self.adversary.update(self._fake, self.target("gan", batch), batch.get("mask"), apply)
        self._fake = None
        return terms

    def total_loss(self, terms: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """The sum of the terms without the ``log_`` prefix; a NaN or infinite sum stops the run (the step not
        applied) with the names of the bad terms and the checkpoint to resume from."""
        total = sum(v for k, v in terms.items() if not k.startswith("log_"))
        if math.isfinite(total.item()):
            return total
        bad = ", ".join(f"{k}={v.item()}" for k, v in terms.items() if not math.isfinite(v.item()))
        last = Path(self.run_dir) / "checkpoints" / "last.ckpt"
        advice = (
            f"the last good checkpoint is {last} (resume with resume=auto, maybe with a lower learning rate)"
            if last.is_file()
            else "no checkpoint was written yet: check the data and the loss weights, or lower the learning rate"
        )
        raise NonFiniteLossError(
            f"non-finite loss at step {step} ({bad}); the step was not applied; {advice}"
        )

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
        if self.degradation is not None:  # a fixed degradation per image: seeded by the run seed and its name
            name = ",".join(batch.get("name", [str(batch_idx)]))
            batch = self.degrade(batch, step_seed(self.seed, zlib.crc32(name.encode())))
        out = self.output(self.eval_net.eval(), batch, batch_idx)
        if self.metrics is not None:
            self.metrics.update(out, batch["gt"], names=list(batch.get("name", [])) or None)
        if len(self._panels) < self.val_panels:
            self._panels.append(panel(batch["lq"][:1], [out[:1]], batch["gt"][:1]))

    def on_validation_epoch_end(self) -> None:
        if self.metrics is not None:
            values = self.metrics.compute()
            # already over all processes' images (MetricSuite gathers the per-image values): no averaging again
            self.log_dict({f"val/{k}": float(v) for k, v in values.items()}, prog_bar=True)
        if self._panels and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            log_panels(self._panels, self.loggers, self.global_step, self.run_dir)

    def output(self, net: nn.Module, batch: dict[str, torch.Tensor], index: int) -> torch.Tensor:
        """The reported restoration in [0, 1]; for inpainting LaMa's ``inpainted``: the known pixels are the input's."""
        out = self.predict(net, batch, index).clamp(0, 1)
        return composite(out, batch["gt"], batch["mask"]) if "mask" in batch else out

    def restore_batch(
        self, net: nn.Module, lq: torch.Tensor, gt: torch.Tensor | None, index: int
    ) -> torch.Tensor:
        """Any-size restoration; stage 2 starts its reverse diffusion from a noise vector seeded by the image
        index, so validation scores do not change between evaluations of the same weights."""
        noise = start_noise(net, lq.shape[0], self.seed + index, lq.device)
        return restore(net, lq, gt=gt, noise=noise)

    # --- checkpoints ----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint carries a self-describing model record (the EMA weights) for eval / infer / stage 2."""
        checkpoint["diffir_model"] = model_record(self.model_config, self.eval_net.state_dict())
