"""Training runs end to end with tiny models: every task and stage, hand-off, resume, errors, ablations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffir.checkpoint import read_checkpoint
from diffir.config import CONF_DIR, compose_config
from diffir.lit import NonFiniteLossError
from diffir.training import RunSetupError, train

REPO = Path(__file__).resolve().parents[1]
TASKS = ["sr", "deblur", "inpainting"]


def overrides(tmp_path: Path, task: str, stage: int, steps: int = 2, *extra: str) -> list[str]:
    """A tiny, fast run: tiny model, 32-px patches, batch 2, CSV logger, no progress bar."""
    return [
        f"task={task}",
        f"stage={stage}",
        "model=tiny",
        "data=samples",
        "logger=csv",
        "trainer=cpu",
        "~callbacks.progress",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=1",
        f"paths.experiments_dir={tmp_path}",
        "name=test",
        f"stage{stage}.max_steps={steps}",
        f"stage{stage}.val_every={steps}",
        f"stage{stage}.batch_size=2",
        f"stage{stage}.patch_size=32",
        "data.num_workers=0",
        "data.val_center_crop=32",
        *extra,
    ]


def run(tmp_path, task, stage, steps=2, *extra):
    return train(compose_config(overrides(tmp_path, task, stage, steps, *extra)))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


@pytest.mark.parametrize("task", TASKS)
def test_both_stages_train_and_stage2_finds_stage1(tmp_path, task):
    s1 = run(tmp_path, task, 1)
    assert s1["steps"] == 2
    last1 = Path(s1["last_checkpoint"])
    assert last1.is_file()
    assert "val/psnr" in s1["val"] and s1["best_checkpoint"]
    s2 = run(tmp_path, task, 2)
    assert s2["steps"] == 2
    ckpt1, ckpt2 = read_checkpoint(last1), read_checkpoint(Path(s2["last_checkpoint"]))
    assert ckpt2["diffir_model"]["config"]["stage"] == 2
    # the teacher is stage 1's EMA CPEN, frozen: identical after stage-2 training
    teacher = {
        k.removeprefix("teacher."): v for k, v in ckpt2["state_dict"].items() if k.startswith("teacher.")
    }
    stage1_e = {
        k.removeprefix("E."): v for k, v in ckpt1["diffir_model"]["state_dict"].items() if k.startswith("E.")
    }
    assert teacher.keys() == stage1_e.keys()
    assert all(torch.equal(teacher[k], stage1_e[k]) for k in teacher)
    # panels were written for the validation
    assert list((Path(s2["run_dir"]) / "images").glob("val_step*.png"))


def test_stage2_without_stage1_says_what_to_run(tmp_path):
    with pytest.raises(RunSetupError, match="stage=1"):
        run(tmp_path, "sr", 2)


def test_missing_paper_dataset_names_it_and_the_prepare_command(tmp_path):
    cfg = compose_config(
        overrides(tmp_path, "sr", 1, 2, "data=df2k", f"paths.data_dir={tmp_path / 'nothing'}")
    )
    with pytest.raises(RunSetupError) as err:
        train(cfg)
    message = str(err.value)
    assert "df2k" in message and "python -m diffir.data.prepare df2k" in message and "nothing" in message


def test_folder_dataset_trains(tmp_path):
    from PIL import Image
    from skimage import data as skdata

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        Image.fromarray(getattr(skdata, name)()[:96, :96]).save(folder / f"{name}.png")
    summary = run(tmp_path, "sr", 1, 2, "data=folder", f"data.root={folder}", "data.val_center_crop=32")
    assert summary["steps"] == 2


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    extra = ("stage1.val_every=2", "stage2.val_every=2")
    full = run(tmp_path / "full", "sr", 1, 4, *extra)
    half = run(tmp_path / "half", "sr", 1, 2, *extra)
    assert half["steps"] == 2
    resumed = run(tmp_path / "half", "sr", 1, 4, "resume=auto", *extra)
    assert resumed["steps"] == 4
    a, b = weights(Path(full["last_checkpoint"])), weights(Path(resumed["last_checkpoint"]))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=lambda m, k=key: f"{k}: {m}")


def test_stage2_resume_matches_including_warmup_switch(tmp_path):
    run(tmp_path / "full", "sr", 1)
    run(tmp_path / "half", "sr", 1)
    extra = ("stage2.encoder_iter=2", "stage2.val_every=2")
    full = run(tmp_path / "full", "sr", 2, 4, *extra)
    run(tmp_path / "half", "sr", 2, 2, *extra)
    resumed = run(tmp_path / "half", "sr", 2, 4, "resume=auto", *extra)
    a, b = weights(Path(full["last_checkpoint"])), weights(Path(resumed["last_checkpoint"]))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=lambda m, k=key: f"{k}: {m}")


def test_warmup_trains_only_cpen_s2_and_denoiser(tmp_path):
    run(tmp_path, "sr", 1)
    s1 = read_checkpoint(tmp_path / "test" / "stage1" / "checkpoints" / "last.ckpt")["diffir_model"][
        "state_dict"
    ]
    summary = run(tmp_path, "sr", 2, 2, "stage2.encoder_iter=5", "stage2.ema_decay=0")
    ckpt = read_checkpoint(Path(summary["last_checkpoint"]))
    s2 = ckpt["state_dict"]
    g_keys = [k for k in s1 if k.startswith("G.")]
    assert all(torch.equal(s2[f"net.{k}"], s1[k]) for k in g_keys), "DIRformer moved during the warm-up"
    main, warmup = ckpt["optimizer_states"]
    assert main["state"] == {}, "the joint optimiser stepped during the warm-up"
    assert len(warmup["state"]) == sum(1 for k in s2 if k.startswith(("net.condition.", "net.denoise.")))


def test_non_finite_loss_stops_with_the_step(tmp_path):
    run(tmp_path, "sr", 1, 2, "stage1.val_every=2")
    last = tmp_path / "test" / "stage1" / "checkpoints" / "last.ckpt"
    before = weights(last)
    with pytest.raises(NonFiniteLossError, match="at step 2"):
        run(tmp_path, "sr", 1, 4, "resume=auto", "stage1.val_every=2", "losses.l1.weight=nan")
    after = weights(last)
    assert all(torch.equal(before[k], after[k]) for k in before), "the last good checkpoint was overwritten"


def test_conventional_diffusion_ablation_uses_noise_prediction(tmp_path):
    run(tmp_path, "sr", 1)
    summary = run(tmp_path, "sr", 2, 2, "diffusion.objective=conventional", "diffusion.parameterization=eps")
    (log,) = (Path(summary["run_dir"]) / "csv").glob("*/metrics.csv")
    metrics = log.read_text().splitlines()[0]
    assert "train/prior_noise_mse" in metrics and "train/prior," not in metrics + ","


def test_noise_prediction_loss_is_mse_at_a_random_timestep():
    from diffir.models import Denoiser, IPRDiffusion

    diffusion, denoise = IPRDiffusion(parameterization="eps"), Denoiser(ipr_dim=8, timesteps=4)
    c, z, noise = torch.rand(64, 8), torch.rand(64, 8), torch.randn(64, 8)
    torch.manual_seed(3)
    loss = diffusion.noise_prediction_loss(denoise, c, z, noise)
    torch.manual_seed(3)
    t = torch.randint(0, 4, (64,))
    assert len(t.unique()) > 1, "timesteps should vary within a batch"
    expected = torch.nn.functional.mse_loss(denoise(diffusion.q_sample(z, t, noise), t, c), noise)
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="parameterization='eps'"):
        IPRDiffusion().noise_prediction_loss(denoise, c, z)


@pytest.mark.parametrize("kind", ["l1", "l2", "kl"])
def test_prior_loss_kinds(kind):
    from diffir.losses import PriorLoss

    z = torch.rand(4, 16)
    loss = PriorLoss(kind)
    assert loss(z_hat=z, z=z).item() == pytest.approx(0.0, abs=1e-6)
    expected = {"l1": 0.5, "l2": 0.25, "kl": 0.0}[kind]  # KL compares softmaxes: invariant to a shift
    assert loss(z_hat=z + 0.5, z=z).item() == pytest.approx(expected, abs=1e-6)
    assert loss(z_hat=torch.rand(4, 16) * 10, z=z).item() > 0


EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs_a_step(tmp_path, experiment):
    """Each preset composes for both stages and runs one step with its model swapped for the tiny preset."""
    for stage in (1, 2):
        cfg = compose_config([f"experiment={experiment}", f"stage={stage}"])
        assert cfg.run.max_steps > 0 and cfg.task_name in TASKS
        extra = [
            f"experiment={experiment}",
            "data=samples",
            "trainer=cpu",
            f"stage{stage}.progressive=null",
            f"stage{stage}.encoder_iter=0" if stage == 2 else f"stage{stage}.ema_decay={cfg.run.ema_decay}",
        ]
        summary = train(compose_config([*overrides(tmp_path, cfg.task_name, stage, 1), *extra]))
        assert summary["steps"] == 1


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    """A run killed with SIGKILL after a checkpoint resumes and ends with the same weights."""
    base = [
        sys.executable,
        str(REPO / "train.py"),
        *overrides(tmp_path / "x", "sr", 1, 12),
        "stage1.val_every=3",
    ]
    uninterrupted = run(tmp_path / "ref", "sr", 1, 12, "stage1.val_every=3")
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(base, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = tmp_path / "x" / "test" / "stage1" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpt_dir.glob("step0000006.ckpt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (ckpt_dir / "last.ckpt").is_file(), "no checkpoint was written before the kill"
    assert read_checkpoint(ckpt_dir / "last.ckpt")["global_step"] < 12, (
        "the run finished before it was killed"
    )
    subprocess.run([*base, "resume=auto"], cwd=REPO, env=env, check=True, capture_output=True)
    a, b = weights(Path(uninterrupted["last_checkpoint"])), weights(ckpt_dir / "last.ckpt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_default_logger_is_wandb_and_runs_offline_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config([o for o in overrides(tmp_path, "sr", 1, 1) if o != "logger=csv"])
    assert set(cfg.logger) == {"wandb"}
    assert list(cfg.logger.wandb.tags) == ["sr", "stage1", "tiny"]
    summary = train(cfg)
    assert list((Path(summary["run_dir"]) / "wandb").glob("offline-run-*")), "no offline W&B run was written"


def test_bad_inputs_stop_the_run_at_start_with_the_culprit_named(tmp_path):
    from PIL import Image
    from skimage import data as skdata

    with pytest.raises(RunSetupError, match=r"data=folder needs data\.root="):
        train(compose_config(overrides(tmp_path, "sr", 1, 2, "data=folder")))

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(skdata.chelsea()[:96, :96]).save(folder / "good.png")
    Image.fromarray(skdata.coffee()[:96, :96]).save(folder / "full.png")
    raw = (folder / "full.png").read_bytes()
    (folder / "broken.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(RunSetupError, match=r"broken\.png") as err:
        train(compose_config(overrides(tmp_path, "sr", 1, 2, "data=folder", f"data.root={folder}")))
    assert "skip_bad_files" in str(err.value)

    not_a_checkpoint = folder / "good.png"
    with pytest.raises(RunSetupError, match=r"cannot read checkpoint .*good\.png"):
        train(compose_config(overrides(tmp_path, "sr", 2, 2, f"stage1_ckpt={not_a_checkpoint}")))


def test_several_loggers_at_once(tmp_path, monkeypatch):
    """logger=many: W&B (offline), CSV and TensorBoard all receive the run."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config([*(o for o in overrides(tmp_path, "sr", 1, 1) if o != "logger=csv"), "logger=many"])
    run_dir = Path(train(cfg)["run_dir"])
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert list((run_dir / "csv").glob("*/metrics.csv"))
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
