"""Adversarial training with tiny models on the CPU: the SR / RealSR adversarial stage, LaMa-loss inpainting,
exact resume, and the start-up errors (missing stage-2 checkpoint, wrong task, missing pretrained weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from numerics import assert_float32_close, float32_tolerance
from test_training import overrides, weights

from diffir.checkpoint import atomic_save, model_record, read_checkpoint
from diffir.config import compose_config
from diffir.errors import RunSetupError
from diffir.model_config import build_from_config, model_config
from diffir.runs.build import build_datamodule, build_module
from diffir.runs.checks import adopt_legacy_gan_dir
from diffir.runs.train import train
from diffir.tasks import task_facts

# A random VGG19 for the perceptual loss (warned) and a small U-Net discriminator.
GAN = ("losses.perceptual.pretrained=false", "gan.adversary.discriminator.num_feat=8")
PRESETS = {"sr": "adversarial=srgan", "realsr": "adversarial=realsr_v2"}


def model_file(tmp_path: Path, task: str, stage: int, scale: int | None = None) -> Path:
    """A randomly initialised tiny model of ``task`` / ``stage`` saved as a model file (no training needed)."""
    cfg = compose_config(overrides(tmp_path, task, stage, 1, *([f"scale={scale}"] if scale else [])))
    config = model_config(task_facts(cfg.task).network, stage, cfg.scale, cfg.model, cfg.diffusion)
    path = tmp_path / f"{task}_x{cfg.scale}_stage{stage}.pt"
    atomic_save(model_record(config, build_from_config(config).state_dict()), path)
    return path


def gan_overrides(tmp_path: Path, task: str, steps: int, *extra: str) -> list[str]:
    return [*overrides(tmp_path, task, 2, steps), PRESETS[task], *GAN, *extra]


@pytest.fixture(scope="module")
def sr_models(tmp_path_factory) -> tuple[Path, Path]:
    """Stage-1 and stage-2 SR model files the adversarial stage starts from."""
    tmp = tmp_path_factory.mktemp("models")
    return model_file(tmp, "sr", 1), model_file(tmp, "sr", 2)


@pytest.mark.slow
def test_sr_adversarial_stage_trains_generator_and_discriminator_not_the_teacher(tmp_path, sr_models):
    stage1, stage2 = sr_models
    summary = train(
        compose_config(
            gan_overrides(
                tmp_path, "sr", 2, f"stage1_ckpt={stage1}", f"init_ckpt={stage2}", "stage2.val_every=1"
            )
        )
    )
    run_dir = Path(summary["run_dir"])
    assert run_dir.name == "gan" and summary["steps"] == 2
    first, second = (weights(run_dir / "checkpoints" / f"step000000{i}.ckpt") for i in (1, 2))
    start = read_checkpoint(stage2)["state_dict"]
    teacher = read_checkpoint(stage1)["state_dict"]

    d_keys = [
        k for k in first if k.startswith("adversary.discriminator.") and k.endswith(("weight", "_orig"))
    ]
    assert d_keys and any(not torch.equal(first[k], second[k]) for k in d_keys), (
        "the discriminator did not learn"
    )
    assert any(not torch.equal(first[f"net.{k}"], second[f"net.{k}"]) for k in start), (
        "the generator did not learn"
    )
    assert any(not torch.equal(first[f"net.{k}"], start[k]) for k in start)
    for k, v in teacher.items():  # the frozen teacher is the stage-1 CPEN, untouched
        if k.startswith("E."):
            assert torch.equal(second[f"teacher.{k[2:]}"], v)
    # the EMA copy started from the stage-2 weights: after one step it moved by (1 − 0.999)·Δw, and Adam's first
    # step moves a weight by at most lr = 2e-4 (measured ≤ 1.97e-7), plus the lerp's rounding (ε of |w|)
    for k, v in start.items():
        if v.is_floating_point():
            drift = (1 - 0.999) * 2e-4 + float32_tolerance(2, float(v.abs().max()))
            torch.testing.assert_close(
                first[f"net_ema.{k}"], v, atol=drift, rtol=0, msg=lambda m, k=k: f"{k}: {m}"
            )

    (log,) = (run_dir / "csv").glob("*/metrics.csv")
    header = log.read_text().splitlines()[0].split(",")
    for key in ("gan", "perceptual", "l1", "prior", "d_real", "d_fake", "d_real_logit", "d_fake_logit"):
        assert f"train/{key}" in header, key


@pytest.mark.slow
def test_sr_adversarial_resume_matches_uninterrupted(tmp_path, sr_models):
    stage1, stage2 = sr_models
    common = (f"stage1_ckpt={stage1}", f"init_ckpt={stage2}", "stage2.val_every=2")
    full = train(compose_config(gan_overrides(tmp_path / "full", "sr", 4, *common)))
    train(compose_config(gan_overrides(tmp_path / "half", "sr", 2, *common)))
    resumed = train(compose_config(gan_overrides(tmp_path / "half", "sr", 4, *common, "resume=auto")))
    a, b = (read_checkpoint(Path(s["last_checkpoint"])) for s in (full, resumed))
    assert len(a["optimizer_states"]) == 2 and len(a["lr_schedulers"]) == 2  # G and D
    # the same steps on the same batches: equal up to the rounding of another thread split
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert_float32_close(b["state_dict"][key], value, terms=64, msg=key)
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert opt_a["state"].keys() == opt_b["state"].keys()
        for index, state in opt_a["state"].items():
            for name, value in state.items():
                assert_float32_close(opt_b["state"][index][name], value, terms=64, msg=f"{index}.{name}")


@pytest.mark.slow
def test_realsr_degradation_pool_resumes_exactly(tmp_path):
    """task=realsr scale=4 on the bundled photos: the training-pair pool (4 pairs: full after 2 steps, then
    swapped) is in the checkpoint, and a run resumed at step 2 matches an uninterrupted one."""
    pool = ("+batch_degradation.queue_size=4", "stage1.val_every=2")
    half = train(compose_config(overrides(tmp_path, "realsr", 1, 2, *pool)))
    assert int(weights(Path(half["last_checkpoint"]))["degradation._extra_state"]["queue_ptr"]) == 4
    resumed = train(compose_config(overrides(tmp_path, "realsr", 1, 4, *pool, "resume=auto")))
    full = train(compose_config(overrides(tmp_path / "full", "realsr", 1, 4, *pool)))
    a, b = weights(Path(full["last_checkpoint"])), weights(Path(resumed["last_checkpoint"]))
    # the pool holds 8-bit images (GT crops moved, LQs rounded to the 8-bit grid) made by the same computation
    torch.testing.assert_close(
        b.pop("degradation._extra_state"), a.pop("degradation._extra_state"), rtol=0, atol=0
    )
    assert a.keys() == b.keys()
    for key in a:  # the same steps on the same batches: equal up to the rounding of another thread split
        assert_float32_close(b[key], a[key], terms=64, msg=key)


@pytest.mark.slow
def test_realsr_adversarial_stage_trains(tmp_path):
    """The RealSR V2 adversarial stage after stages 1 and 2 (which tests/test_training.py runs for realsr)."""
    start = (
        f"stage1_ckpt={model_file(tmp_path, 'realsr', 1)}",
        f"init_ckpt={model_file(tmp_path, 'realsr', 2)}",
    )
    gan = train(compose_config(gan_overrides(tmp_path, "realsr", 2, *start)))
    assert gan["steps"] == 2 and Path(gan["run_dir"]).name == "gan"
    assert read_checkpoint(Path(gan["last_checkpoint"]))["diffir_model"]["config"]["task"] == "sr"


def assert_learns_and_composites(cfg, ckpt_dir: Path) -> None:
    first, second = (weights(ckpt_dir / f"step000000{i}.ckpt") for i in (1, 2))
    for part in ("adversary.discriminator.", "net."):
        keys = [k for k in first if k.startswith(part) and first[k].is_floating_point()]
        assert any(not torch.equal(first[k], second[k]) for k in keys), f"{part} did not learn"
    module = build_module(cfg)
    module.load_state_dict(second)
    gt = build_datamodule(cfg).val_set[0]["gt"][None]
    mask = torch.zeros_like(gt[:, :1])
    mask[..., : gt.shape[-1] // 2] = 1  # the left half is the hole
    batch = {"gt": gt, "mask": mask, "lq": torch.cat([gt * (1 - mask), mask], dim=1)}
    with torch.no_grad():
        out = module.output(module.eval_net.eval(), batch, 0)
    known = (1 - mask).bool().expand_as(gt)
    assert torch.equal(out[known], gt[known]), "known pixels of the composite differ from the input"
    assert not torch.equal(out[~known], gt[~known])


@pytest.mark.slow
def test_inpainting_stage1_learns_with_lama_losses_and_resumes(tmp_path):
    cfg = compose_config(overrides(tmp_path, "inpainting", 1, 2, "stage1.val_every=1"))
    half = train(cfg)
    assert_learns_and_composites(cfg, Path(half["run_dir"]) / "checkpoints")
    (log,) = (Path(half["run_dir"]) / "csv").glob("*/metrics.csv")
    header = log.read_text().splitlines()[0].split(",")
    for key in ("l1", "resnet_pl", "adversarial", "feature_matching", "d_real", "d_fake", "d_r1"):
        assert f"train/{key}" in header, key

    resumed = train(compose_config(overrides(tmp_path, "inpainting", 1, 4, "resume=auto")))
    full = train(compose_config(overrides(tmp_path / "full", "inpainting", 1, 4)))
    a, b = weights(Path(full["last_checkpoint"])), weights(Path(resumed["last_checkpoint"]))
    assert any(k.startswith("adversary.discriminator.") for k in a)
    assert not any(k.startswith("losses.") for k in a), "the frozen ResNetPL encoder went into the checkpoint"
    assert a.keys() == b.keys()
    for key in a:  # the same steps on the same batches: equal up to the rounding of another thread split
        assert_float32_close(b[key], a[key], terms=64, msg=key)


@pytest.mark.slow
def test_inpainting_stage2_learns_with_lama_losses(tmp_path):
    stage1 = model_file(tmp_path, "inpainting", 1)
    cfg = compose_config(
        overrides(tmp_path, "inpainting", 2, 2, "stage2.val_every=1", f"stage1_ckpt={stage1}")
    )
    summary = train(cfg)
    assert_learns_and_composites(cfg, Path(summary["run_dir"]) / "checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("experiment,scale", [("sr_x4_gan_paper", 4), ("sr_x2_gan_paper", 2)])
def test_adversarial_presets_run_a_step(tmp_path, experiment, scale):
    cfg = compose_config([f"experiment={experiment}", "stage=2"])
    assert cfg.stage_name == "gan" and cfg.run.max_steps == 400_000 and cfg.scale == scale
    start = (
        f"stage1_ckpt={model_file(tmp_path, 'sr', 1, scale)}",
        f"init_ckpt={model_file(tmp_path, 'sr', 2, scale)}",
    )
    extra = (f"experiment={experiment}", "data=samples", "trainer=cpu", *start, *GAN)
    summary = train(compose_config([*overrides(tmp_path, "sr", 2, 1), *extra]))
    assert summary["steps"] == 1


def one_line_error(cfg) -> str:
    with pytest.raises(RunSetupError) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_adversarial_stage_without_stage2_says_what_to_run(tmp_path):
    message = one_line_error(compose_config(gan_overrides(tmp_path, "sr", 1)))
    assert "stage2" in message and "stage=2" in message and "init_ckpt=" in message


def test_a_run_in_the_former_stage2_gan_folder_continues_there(tmp_path):
    """The adversarial stage is named gan (folder gan/); a run begun in stage2_gan/ continues in that folder."""
    cfg = compose_config([*gan_overrides(tmp_path, "sr", 1), "resume=auto"])
    assert Path(cfg.paths.run_dir).name == "gan"
    adopt_legacy_gan_dir(cfg)
    assert Path(cfg.paths.run_dir).name == "gan"  # nothing to continue: a new run in gan/
    legacy = tmp_path / "test" / "stage2_gan" / "checkpoints"
    legacy.mkdir(parents=True)
    (legacy / "last.ckpt").write_bytes(b"")
    adopt_legacy_gan_dir(cfg)
    assert Path(cfg.paths.run_dir) == legacy.parent
    plain = compose_config(overrides(tmp_path, "sr", 2, 1))
    adopt_legacy_gan_dir(plain)
    assert Path(plain.paths.run_dir).name == "stage2"  # the plain stage 2 is not the adversarial stage


def test_stage2_without_stage1_says_what_to_run(tmp_path):
    message = one_line_error(compose_config(overrides(tmp_path, "sr", 2, 1)))
    assert "stage1" in message and "stage=1" in message and "stage1_ckpt=" in message


def test_checkpoints_of_another_task_are_refused(tmp_path):
    stage1 = model_file(tmp_path, "sr", 1)
    deblur2 = model_file(tmp_path, "deblur", 2)
    message = one_line_error(
        compose_config(gan_overrides(tmp_path, "sr", 1, f"stage1_ckpt={stage1}", f"init_ckpt={deblur2}"))
    )
    assert "task=deblur" in message and str(deblur2) in message

    foreign = tmp_path / "inpainting_gan.ckpt"
    atomic_save(
        {"diffir_model": read_checkpoint(model_file(tmp_path, "inpainting", 2)), "state_dict": {}}, foreign
    )
    message = one_line_error(
        compose_config(
            gan_overrides(
                tmp_path,
                "sr",
                1,
                f"stage1_ckpt={stage1}",
                f"init_ckpt={model_file(tmp_path, 'sr', 2)}",
                f"disc_ckpt={foreign}",
            )
        )
    )
    assert "disc_ckpt" in message and "task=inpainting" in message


@pytest.mark.parametrize(
    "task,stage,option,filename",
    [
        ("sr", 2, "losses.perceptual.pretrained=true", "vgg19"),
        ("inpainting", 1, "losses.resnet_pl.pretrained=true", "ade20k"),
    ],
)
def test_missing_pretrained_weights_stop_with_one_line(tmp_path, monkeypatch, task, stage, option, filename):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    extra = (PRESETS[task], "gan.adversary.discriminator.num_feat=8") if task == "sr" else ()
    message = one_line_error(compose_config([*overrides(tmp_path, task, stage, 1), *extra, option]))
    key = option.removesuffix("=true")
    assert filename in message.lower() and str(tmp_path / "empty_torch_home") in message
    assert f"{key}=false" in message


def test_bce_adversary_weights_the_generator_term_only():
    from diffir.losses import GANLoss
    from diffir.losses.adversary import BCEAdversary
    from diffir.models.discriminators import UNetDiscriminatorSN

    torch.manual_seed(0)
    adversary = BCEAdversary(UNetDiscriminatorSN(num_feat=4).eval(), GANLoss(loss_weight=0.5))
    out, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    d_out, d_gt = adversary.discriminator(out), adversary.discriminator(gt)
    g = adversary.generator_terms(out, gt)
    n = d_out.numel()  # each term is a mean over D's n per-pixel outputs
    assert_float32_close(g["gan"], 0.5 * bce(d_out, torch.ones_like(d_out)), terms=n)
    d = adversary.discriminator_terms(out, gt)
    assert_float32_close(d["d_real"], bce(d_gt, torch.ones_like(d_gt)), terms=n)
    assert_float32_close(d["d_fake"], bce(d_out, torch.zeros_like(d_out)), terms=n)
    assert_float32_close(d["log_d_fake_logit"], d_out.mean(), terms=n)


def test_lama_adversary_terms_and_r1_gradient():
    from diffir.losses import NonSaturatingWithR1, feature_matching_loss
    from diffir.losses.adversary import LamaAdversary
    from diffir.models.discriminators import NLayerDiscriminator

    torch.manual_seed(0)
    adversary = LamaAdversary(NLayerDiscriminator(3, 8, 2).eval(), NonSaturatingWithR1(), 100.0)
    out, gt = torch.rand(2, 3, 32, 32, requires_grad=True), torch.rand(2, 3, 32, 32)
    mask = (torch.rand(2, 1, 32, 32) > 0.5).float()
    fake_pred, fake_features = adversary.discriminator(out)
    _, real_features = adversary.discriminator(gt)
    g = adversary.generator_terms(out, gt, mask)
    # means over D's outputs and over its largest feature map
    expected = 10 * torch.nn.functional.softplus(-fake_pred).mean()
    assert_float32_close(g["adversarial"], expected, terms=fake_pred.numel())
    expected = 100 * feature_matching_loss(fake_features, real_features)
    assert_float32_close(g["feature_matching"], expected, terms=max(f.numel() for f in real_features))

    d = adversary.discriminator_terms(out.detach(), gt, mask)
    assert d["log_d_r1"] > 0 and gt.grad is None
    d["d_total"].backward()
    assert out.grad is None, "the discriminator's loss reached the generator's output"
    assert all(p.grad is not None for p in adversary.discriminator.parameters())


def test_adversary_update_trains_the_discriminator_after_freeze():
    """``freeze`` keeps the generator's loss out of D's weights; ``update`` makes D trainable again, hands its
    terms to the trainer's ``apply`` and returns them for the logs."""
    from diffir.losses import GANLoss
    from diffir.losses.adversary import BCEAdversary
    from diffir.models.discriminators import UNetDiscriminatorSN

    torch.manual_seed(0)
    adversary = BCEAdversary(UNetDiscriminatorSN(num_feat=4).eval(), GANLoss())
    out, gt = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 3, 16, 16)
    adversary.freeze()
    adversary.generator_terms(out, gt)["gan"].backward()
    assert out.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in adversary.discriminator.parameters())
    handed = []

    def apply(terms):
        handed.append(terms)
        (terms["d_real"] + terms["d_fake"]).backward()

    terms = adversary.update(out.detach(), gt, None, apply)
    assert handed == [terms] and {"d_real", "d_fake"} <= terms.keys()
    assert all(p.grad is not None for p in adversary.discriminator.parameters() if p.requires_grad)
    assert any(p.requires_grad for p in adversary.discriminator.parameters())
