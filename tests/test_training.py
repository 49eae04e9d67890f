"""Training runs end to end with tiny models: every task and stage, hand-off, resume, errors, ablations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from numerics import assert_float32_close, float32_tolerance
from omegaconf import OmegaConf
from scripts import run_script

from diffir.checkpoint import read_checkpoint
from diffir.config import compose_config
from diffir.errors import RunSetupError
from diffir.lit import NonFiniteLossError, Stage2Module
from diffir.model_config import CONF_DIR
from diffir.runs.train import train

REPO = Path(__file__).resolve().parents[1]
TASKS = ["sr", "deblur", "inpainting", "realsr"]
TASK_EXTRAS = {
    # LaMa's ResNetPL without the ADE20k weight file (a random encoder, warned), a small discriminator
    "inpainting": ("losses.resnet_pl.pretrained=false", "gan.adversary.discriminator.ndf=8"),
    # the Real-ESRGAN degradation needs GT sides >= 74 px; LPIPS needs weights this machine may not have
    "realsr": ("gt_crop=80", "metrics.metrics=[psnr]"),
}


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
        *TASK_EXTRAS.get(task, ()),
        *extra,
    ]


def run(tmp_path, task, stage, steps=2, *extra):
    return train(compose_config(overrides(tmp_path, task, stage, steps, *extra)))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.slow
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


@pytest.mark.slow
def test_folder_dataset_trains(tmp_path):
    from PIL import Image
    from skimage import data as skdata

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        Image.fromarray(getattr(skdata, name)()[:96, :96]).save(folder / f"{name}.png")
    summary = run(tmp_path, "sr", 1, 2, "data=folder", f"data.root={folder}", "data.val_center_crop=32")
    assert summary["steps"] == 2


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    extra = ("stage1.val_every=2", "stage2.val_every=2")
    full = run(tmp_path / "full", "sr", 1, 4, *extra)
    half = run(tmp_path / "half", "sr", 1, 2, *extra)
    assert half["steps"] == 2
    resumed = run(tmp_path / "half", "sr", 1, 4, "resume=auto", *extra)
    assert resumed["steps"] == 4
    a, b = weights(Path(full["last_checkpoint"])), weights(Path(resumed["last_checkpoint"]))
    assert a.keys() == b.keys()
    for key in a:  # the same steps on the same batches: equal up to the rounding of another thread split
        assert_float32_close(b[key], a[key], terms=64, msg=key)


@pytest.mark.slow
def test_stage2_resume_matches_including_warmup_switch(tmp_path):
    run(tmp_path / "full", "sr", 1)
    run(tmp_path / "half", "sr", 1)
    extra = ("stage2.encoder_iter=2", "stage2.val_every=2")
    full = run(tmp_path / "full", "sr", 2, 4, *extra)
    run(tmp_path / "half", "sr", 2, 2, *extra)
    resumed = run(tmp_path / "half", "sr", 2, 4, "resume=auto", *extra)
    a, b = weights(Path(full["last_checkpoint"])), weights(Path(resumed["last_checkpoint"]))
    assert a.keys() == b.keys()
    for key in a:  # the same steps on the same batches: equal up to the rounding of another thread split
        assert_float32_close(b[key], a[key], terms=64, msg=key)


@pytest.mark.slow
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


def test_warmup_ends_at_the_official_iteration():
    """BasicSR counts iterations from 1 and warms up while iter < encoder_iter: with encoder_iter=3 the
    official run warms up at iterations 1 and 2 (our steps 0 and 1) and trains jointly from iteration 3."""
    module = SimpleNamespace(encoder_iter=3)
    assert [Stage2Module.in_warmup(module, step) for step in range(4)] == [True, True, False, False]


@pytest.mark.slow
def test_non_finite_loss_stops_with_the_step(tmp_path):
    run(tmp_path, "sr", 1, 2, "stage1.val_every=2")
    last = tmp_path / "test" / "stage1" / "checkpoints" / "last.ckpt"
    before = weights(last)
    with pytest.raises(NonFiniteLossError, match=r"at step 2 .*the last good checkpoint is .*last\.ckpt"):
        run(tmp_path, "sr", 1, 4, "resume=auto", "stage1.val_every=2", "losses.l1.weight=nan")
    after = weights(last)
    assert all(torch.equal(before[k], after[k]) for k in before), "the last good checkpoint was overwritten"


@pytest.mark.slow
def test_conventional_diffusion_ablation_uses_noise_prediction(tmp_path):
    run(tmp_path, "sr", 1)
    summary = run(tmp_path, "sr", 2, 2, "diffusion.objective=conventional", "diffusion.parameterization=eps")
    (log,) = (Path(summary["run_dir"]) / "csv").glob("*/metrics.csv")
    metrics = log.read_text().splitlines()[0]
    assert "train/prior_noise_mse" in metrics and "train/prior," not in metrics + ","


def test_noise_prediction_loss_is_mse_at_a_random_timestep():
    from diffir.models import Denoiser, IPRDiffusion

    schedule = {"timesteps": 4, "linear_start": 0.1, "linear_end": 0.99, "reverse_noise": False}
    diffusion = IPRDiffusion(**schedule, parameterization="eps")
    denoise = Denoiser(ipr_dim=8, n_denoise_res=1, timesteps=4)
    c, z, noise = torch.rand(64, 8), torch.rand(64, 8), torch.randn(64, 8)
    torch.manual_seed(3)
    loss = diffusion.noise_prediction_loss(denoise, c, z, noise)
    torch.manual_seed(3)
    t = torch.randint(0, 4, (64,))
    assert len(t.unique()) > 1, "timesteps should vary within a batch"
    expected = torch.nn.functional.mse_loss(denoise(diffusion.q_sample(z, t, noise), t, c), noise)
    assert_float32_close(loss, expected, terms=noise.numel())  # a mean over the 64·8 squared errors
    with pytest.raises(ValueError, match="parameterization='eps'"):
        IPRDiffusion(**schedule, parameterization="x0").noise_prediction_loss(denoise, c, z)


@pytest.mark.parametrize("kind", ["l1", "l2", "kl"])
def test_prior_loss_kinds(kind):
    from diffir.losses import PriorLoss

    z = torch.rand(4, 16)
    loss = PriorLoss(kind)
    tol = float32_tolerance(z.numel(), 1.0)  # means over the 4·16 terms, each ≤ 1 (measured ≤ 1.4 ε)
    assert loss(z_hat=z, z=z).item() == pytest.approx(0.0, abs=tol)
    expected = {"l1": 0.5, "l2": 0.25, "kl": 0.0}[kind]  # KL compares softmaxes: invariant to a shift
    assert loss(z_hat=z + 0.5, z=z).item() == pytest.approx(expected, abs=tol)
    assert loss(z_hat=torch.rand(4, 16) * 10, z=z).item() > 0


def is_adversarial_stage(experiment: Path) -> bool:
    """Whether the preset selects an adversarial recipe, itself or through the preset it extends (read from
    the defaults lists: composing every preset at collection cost ~5 s per pytest process)."""
    defaults = [str(entry) for entry in OmegaConf.load(experiment).get("defaults", [])]
    return any(
        entry.startswith("/adversarial/")
        or (
            (experiment.parent / f"{entry}.yaml").is_file()
            and is_adversarial_stage(experiment.parent / f"{entry}.yaml")
        )
        for entry in defaults
    )


# The adversarial-stage presets need trained stages 1 and 2 first: tests/test_adversarial.py runs them.
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml") if not is_adversarial_stage(p))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs_a_step(tmp_path, experiment):
    """Each preset composes for both stages and runs one step with its model swapped for the tiny preset."""
    for stage in (1, 2):
        cfg = compose_config([f"experiment={experiment}", f"stage={stage}"])
        extra = [
            f"experiment={experiment}",
            "data=samples",
            "trainer=cpu",
            f"stage{stage}.progressive=null",
            *([f"stage{stage}.encoder_iter=0"] if stage == 2 else []),
        ]
        summary = train(compose_config([*overrides(tmp_path, cfg.task, stage, 1), *extra]))
        assert summary["steps"] == 1


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    """A run killed with SIGKILL at step 7 (after the step-6 checkpoint) resumes and ends with the same
    weights (same CPU kind: the random stream of a resumed run is the uninterrupted one's)."""
    uninterrupted = run(tmp_path / "ref", "sr", 1, 12, "stage1.val_every=3")
    kill = ["+callbacks.kill._target_=kill_at_step.KillAtStep", "+callbacks.kill.step=7"]
    killed = run_script("train.py", *overrides(tmp_path / "x", "sr", 1, 12), "stage1.val_every=3", *kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpt_dir = tmp_path / "x" / "test" / "stage1" / "checkpoints"
    assert read_checkpoint(ckpt_dir / "last.ckpt")["global_step"] == 6, "last.ckpt is not the step-6 one"
    run(tmp_path / "x", "sr", 1, 12, "stage1.val_every=3", "resume=auto")  # in this process: one start less
    assert read_checkpoint(ckpt_dir / "last.ckpt")["global_step"] == 12
    a, b = weights(Path(uninterrupted["last_checkpoint"])), weights(ckpt_dir / "last.ckpt")
    for key in a:  # the same steps on the same batches: equal up to the rounding of another thread split
        assert_float32_close(b[key], a[key], terms=64, msg=key)


@pytest.mark.slow
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


@pytest.mark.slow
def test_several_loggers_at_once(tmp_path, monkeypatch):
    """logger=many: W&B (offline), CSV and TensorBoard all receive the run."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config([*(o for o in overrides(tmp_path, "sr", 1, 1) if o != "logger=csv"), "logger=many"])
    run_dir = Path(train(cfg)["run_dir"])
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert list((run_dir / "csv").glob("*/metrics.csv"))
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))


# --- reliability: one run per folder, switches that must work, one-line errors, checkpoint housekeeping ---


@pytest.mark.slow
def test_a_live_run_holds_its_folder_and_a_dead_ones_lock_does_not_block(tmp_path):
    import json
    import socket

    from diffir.runlock import RunLock, RunLockedError

    run_folder = tmp_path / "test" / "stage1"
    with RunLock(run_folder), pytest.raises(RunLockedError, match="name=<new name>"):
        RunLock(run_folder).acquire()  # a second run in the same process tree while the first is alive
    lock = run_folder / ".lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # a live process holds it
    with pytest.raises(RunSetupError) as err:
        run(tmp_path, "sr", 1, 1)
    message = str(err.value)
    assert str(run_folder) in message and "name=" in message and "paths.experiments_dir=" in message
    assert "\n" not in message

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    partial = run_folder / "checkpoints" / ".last.ckpt.x1y2z3.tmp"  # a save killed half-way
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a checkpoint")
    assert run(tmp_path, "sr", 1, 1)["steps"] == 1
    assert not partial.exists(), "the partial checkpoint of a killed save was kept"
    assert not lock.exists(), "the lock outlived its run"


@pytest.mark.slow
def test_no_logger_and_no_progress_bar_work_with_the_default_callbacks(tmp_path):
    """logger=none and trainer.enable_progress_bar=false with the default callbacks (LR monitor, bar)."""
    base = [o for o in overrides(tmp_path, "sr", 1, 1) if o not in ("logger=csv", "~callbacks.progress")]
    no_logger = [o for o in base if not o.startswith("trainer.enable_progress_bar")] + ["logger=none"]
    assert train(compose_config(no_logger))["steps"] == 1
    assert train(compose_config([*base, "name=quiet"]))["steps"] == 1


@pytest.mark.slow
def test_progress_bar_draws_one_line_per_update_and_trainer_max_steps_is_accepted(tmp_path, capfd, caplog):
    """Not a terminal (CI logs): one bar named `train`, each update once; the summary has no FLOPs column."""
    cfg = [o for o in overrides(tmp_path, "sr", 1, 2) if o != "~callbacks.progress"]
    cfg = [
        o for o in cfg if not o.startswith(("trainer.enable_progress_bar", "trainer.enable_model_summary"))
    ]
    with caplog.at_level("INFO", logger="diffir"):
        summary = train(compose_config([*cfg, "trainer.max_steps=3", "stage1.val_every=5"]))
    assert summary["steps"] == 3  # trainer.max_steps is this stage's step count
    lines = [line.strip() for line in capfd.readouterr().out.replace("\r", "\n").splitlines() if line.strip()]
    bars = [line for line in lines if "it/s" in line]
    assert bars and all(line.startswith("train:") for line in bars), bars
    for step in (1, 2):
        assert sum(f"| {step}/3 [" in line for line in bars) == 1, bars
    assert "parameters" in caplog.text and "FLOPs" not in caplog.text


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("stage1.optimizer.lr=-1e-4", r"stage1\.optimizer\.lr=-0\.0001: a learning rate cannot be negative"),
        ("stage1.batch_size=0", r"stage1\.batch_size=0 must be a positive integer"),
        ("stage1.max_steps=0", r"stage1\.max_steps=0 must be a positive integer"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, setting, message):
    with pytest.raises(RunSetupError, match=message):
        run(tmp_path, "sr", 1, 2, setting)


def test_a_pickle_carrying_checkpoint_is_refused_in_one_line_as_ckpt_path_and_by_resume(tmp_path):
    from collections import OrderedDict

    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "extra": OrderedDict, "object": Path("x")}, unsafe)
    with pytest.raises(RunSetupError) as err:
        run(tmp_path, "sr", 1, 1, f"ckpt_path={unsafe}")
    last = tmp_path / "test" / "stage1" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(unsafe.read_bytes())
    with pytest.raises(RunSetupError) as err_auto:
        run(tmp_path, "sr", 1, 1, "resume=auto")
    for message, path in ((str(err.value), unsafe), (str(err_auto.value), last)):
        assert str(path) in message and "pickled Python objects" in message and "PosixPath" in message
        assert "weights_only" not in message and "\n" not in message


@pytest.mark.slow
def test_resuming_a_checkpoint_of_another_model_size_names_the_setting(tmp_path):
    run(tmp_path, "sr", 1, 1)
    last = tmp_path / "test" / "stage1" / "checkpoints" / "last.ckpt"
    with pytest.raises(
        RunSetupError, match=r"cannot resume from .*last\.ckpt: it holds a model with .*dim="
    ) as e:
        run(tmp_path / "other", "sr", 1, 2, "model=small", f"ckpt_path={last}")
    assert "\n" not in str(e.value)


def test_a_model_size_mismatch_is_summarised_not_listed():
    from diffir.checkpoint import load_error_summary, load_strictly
    from diffir.model_config import build_from_config, model_config, model_preset

    tiny, small = (
        build_from_config(model_config("sr", 1, 4, model_preset("sr", p))) for p in ("tiny", "small")
    )
    with pytest.raises(RuntimeError) as err:
        tiny.load_state_dict(small.state_dict())
    sizes = str(err.value).count("size mismatch")
    assert sizes > 20  # torch lists every tensor, one line each
    summary = load_error_summary(err.value)
    assert "\n" not in summary and len(summary) < 400
    assert summary.startswith("Error(s) in loading state_dict for DiffIRS1:")
    missing, unexpected = (
        len(a.state_dict().keys() - b.state_dict().keys()) for a, b in ((tiny, small), (small, tiny))
    )
    assert (
        f"(in all: {sizes} size mismatches, {missing} missing and {unexpected} unexpected tensors)" in summary
    )
    # what every loader raises (the stage-1 hand-off, disc_ckpt=, model files): one line of the caller's error
    with pytest.raises(RunSetupError) as raised:
        load_strictly(
            tiny, small.state_dict(), "the DIRformer of s1.ckpt does not fit model=tiny", RunSetupError
        )
    assert str(raised.value) == f"the DIRformer of s1.ckpt does not fit model=tiny: {summary}"
    load_strictly(small, small.state_dict(), "unused", RunSetupError)  # a fitting state loads silently


@pytest.mark.slow
def test_the_nan_stop_is_one_line_from_the_command_and_names_no_missing_folder(tmp_path):
    proc = run_script("train.py", *overrides(tmp_path, "sr", 1, 2, "losses.l1.weight=nan"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "non-finite loss at step 0" in line and "no checkpoint was written yet" in line
    assert "checkpoints" not in line, "it points to a folder with nothing in it"


@pytest.mark.slow
def test_periodic_checkpoints_keep_only_the_newest(tmp_path):
    summary = run(tmp_path, "sr", 1, 5, "stage1.val_every=1", "callbacks.every.save_top_k=2")
    names = sorted(p.name for p in (Path(summary["run_dir"]) / "checkpoints").iterdir())
    periodic = [n for n in names if n.startswith("step")]
    assert periodic == ["step0000004.ckpt", "step0000005.ckpt"], names
    assert "last.ckpt" in names and sum(n.startswith("best-") for n in names) == 1
