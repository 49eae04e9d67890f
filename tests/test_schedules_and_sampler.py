"""The learning-rate curves of the paper presets (docs/method.md §3.4) and the step-indexed sampler.

Learning rates are given at BasicSR's 1-based iteration ``k``: it steps its schedulers before each update
except the first, so iteration ``k`` runs after ``k - 1`` scheduler steps, as our training step ``k - 1`` does.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hydra.utils import instantiate

from diffir.config import compose_config
from diffir.data.batch_sampler import Phase, ShardSampler, StepBatchSampler, phases


def lr_at(scheduler_cfg, iteration: int, base_lr: float = 2e-4) -> float:
    """The preset scheduler's lr at an official iteration (closed form: no million-step loop)."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = instantiate(scheduler_cfg)(optimizer=optimizer)
    scheduler.last_epoch = iteration - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_lr outside step() warns; it is the closed form here
        form = getattr(scheduler, "_get_closed_form_lr", scheduler.get_lr)
        return form()[0]


def stage2_schedules(experiment: str):
    cfg = compose_config([f"experiment={experiment}", "stage=2"])
    return cfg.stage2.scheduler_e, cfg.stage2.scheduler


@pytest.mark.parametrize(
    ("experiment", "curve_e", "curve_g"),
    [
        (
            "deblur_paper",
            {1: 2e-4, 59_999: 2e-4, 60_000: 2e-5, 99_999: 2e-5},
            {
                100_000: 2e-4,
                179_999: 2e-4,
                180_000: 1e-4,
                259_999: 1e-4,
                260_000: 5e-5,
                340_000: 2.5e-5,
                400_000: 2.5e-5,
            },
        ),
        (
            "realsr_x4_paper",
            {1: 2e-4, 59_999: 2e-4, 60_000: 2e-5, 99_999: 2e-5},
            {100_000: 2e-4, 699_999: 2e-4, 700_000: 1e-4, 1_000_000: 1e-4},
        ),
    ],
)
def test_stage2_step_decays_follow_the_official_manual_learning_rates(experiment, curve_e, curve_g):
    scheduler_e, scheduler_g = stage2_schedules(experiment)
    for curve, scheduler in ((curve_e, scheduler_e), (curve_g, scheduler_g)):
        for step, lr in curve.items():
            assert lr_at(scheduler, step) == pytest.approx(lr, rel=1e-12), (experiment, step)


def test_deblur_stage1_cosine_rises_then_restarts_and_anneals():
    """docs/method.md §3.3: eta_min 2.85e-4 above the base 2e-4, so the first 92k-step period rises; the
    second anneals."""
    scheduler = compose_config(["experiment=deblur_paper", "stage=1"]).stage1.scheduler
    expected = {
        1: 2.0e-4,
        46_001: 2.425e-4,  # mid-period: (2e-4 + 2.85e-4) / 2
        92_001: 2.85e-4,  # end of the first period: its eta_min
        196_001: 1.005e-4,  # middle of the second period: (2e-4 + 1e-6) / 2
        300_001: 1.0e-6,
    }
    for iteration, lr in expected.items():
        assert lr_at(scheduler, iteration) == pytest.approx(lr, rel=1e-9), iteration
    assert lr_at(scheduler, 92_002) == pytest.approx(2e-4, rel=1e-6)  # the restart


def test_deblur_progressive_phases_start_where_the_official_schedule_says():
    progressive = compose_config(["experiment=deblur_paper", "stage=1"]).stage1.progressive
    got = phases(8, 2, progressive)
    starts = [0, 92_000, 172_000, 210_000, 243_000, 276_000]
    sizes, patches = [8, 4, 2, 2, 1, 1], [192, 256, 320, 384, 464, 512]
    assert [p.start for p in got] == starts
    assert [(p.batch_size, p.patch_size) for p in got] == list(zip(sizes, patches, strict=True))
    # samples consumed before each phase, over 2 processes: sum(steps x batch x world)
    assert got[1].first_position == 92_000 * 8 * 2
    assert got[2].first_position == (92_000 * 8 + 80_000 * 4) * 2


def test_sampler_switches_batch_and_patch_at_phase_boundaries_and_continues_the_last():
    progressive = {"steps": [3, 2], "batch_sizes": [4, 2], "patch_sizes": [64, 96]}
    sampler = StepBatchSampler(dataset_size=10, batch_size=99, max_steps=8, progressive=progressive)
    shapes = [(len(b), b[0][2]) for b in sampler]
    assert shapes == [(4, 64)] * 3 + [(2, 96)] * 5
    assert sampler.phase(2) == Phase(0, 4, 64, 0) and sampler.phase(3) == Phase(3, 2, 96, 12)


def test_each_epoch_visits_every_item_once_and_ranks_split_the_global_batch():
    one = StepBatchSampler(dataset_size=12, batch_size=4, max_steps=6, seed=3)
    ranks = [StepBatchSampler(12, 2, 6, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for step in range(6):
        assert ranks[0].batch(step) + ranks[1].batch(step) == one.batch(step)  # same items, seeds, order
    epoch = [key[0] for step in range(3) for key in one.batch(step)]
    assert sorted(epoch) == list(range(12))
    assert epoch != sorted(epoch), "the epoch is not shuffled"
    assert [k[0] for k in one.batch(3)] != epoch[:4], "every epoch has its own order"
    assert len({key[1] for step in range(6) for key in one.batch(step)}) == 24, "sample seeds repeat"


def test_a_resumed_sampler_yields_the_remaining_batches_unchanged():
    full = list(StepBatchSampler(7, 3, 10, seed=1))
    resumed = StepBatchSampler(7, 3, 10, seed=1, start_step=lambda: 4)
    assert len(resumed) == 6 and list(resumed) == full[4:]


def test_validation_shards_cover_every_image_once_without_padding():
    shards = [list(ShardSampler(5, rank, 2)) for rank in (0, 1)]
    assert shards == [[0, 2, 4], [1, 3]]
    assert list(ShardSampler(5)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="fewer than the 3 processes"):
        ShardSampler(2, 0, 3)


@pytest.mark.parametrize("stage", [1, 2])
def test_sr_multistep_halves_after_500k_and_700k_iterations(stage):
    """SRGAN S1 / S2: 2e-4, x0.5 at 500k and 700k (BasicSR's MultiStepRestartLR without restarts)."""
    scheduler = compose_config(["experiment=sr_x4_paper", f"stage={stage}"]).run.scheduler
    curve = {1: 2e-4, 500_000: 2e-4, 500_001: 1e-4, 700_000: 1e-4, 700_001: 5e-5, 1_000_000: 5e-5}
    for iteration, lr in curve.items():
        assert lr_at(scheduler, iteration) == pytest.approx(lr, rel=1e-12), iteration
