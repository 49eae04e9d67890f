"""Rough edges a new user meets on the README's path: what a run says (its progress bar, its noise, its help
pages) and how it stops when the disk or the folder lets it down."""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from PIL import Image
from scripts import run_script
from test_eval_infer import eval_cfg, infer_cfg
from test_training import overrides

from diffir.callbacks import StepProgressBar, format_metric
from diffir.checkpoint import read_checkpoint
from diffir.config import compose_config
from diffir.errors import RunSetupError, StorageError
from diffir.runs.build import build_datamodule
from diffir.runs.train import train

REPO = Path(__file__).resolve().parents[1]
NOISE = ("litlogger", "LeafSpec", "anonymous setting", "Images sizes do not match", "logging interval")


def run_cli(script: str, *args: str, cwd: Path = REPO, fresh: bool = False, **env: str):
    """``python <script> <args>`` from ``cwd`` (one thread): its exit status and everything it printed."""
    return run_script(script, *args, cwd=cwd, env=env, fresh=fresh)


def test_the_progress_bar_shows_metrics_as_precisely_as_the_summary():
    trainer = SimpleNamespace(loggers=[], progress_bar_metrics={"val/psnr": 30.2543, "train/loss": 1.234e-5})
    bar = Tqdm(total=4, file=io.StringIO())
    bar.set_postfix(StepProgressBar().get_metrics(trainer, None))
    assert format_metric(30.2543) == "30.2543"  # the summary's "last validation" and "best checkpoint"
    assert "val/psnr=30.2543" in bar.postfix  # Lightning's own formatting shows val/psnr=30.30
    assert "train/loss=1.234e-05" in bar.postfix


@pytest.mark.slow
def test_a_run_prints_no_third_party_noise_and_its_checkpoints_alike(tmp_path):
    """The litlogger tip, torch's LeafSpec deprecation (through Lightning), W&B's anonymous setting and its
    mismatched image sizes (validation panels of photos of different sizes), Lightning's logging interval in
    debug=fast; the best checkpoint printed absolute beside a relative last one."""
    proc = run_cli(
        "train.py",
        "task=sr",
        "stage=1",
        "debug=fast",
        "logger=wandb",
        "stage1.max_steps=2",
        "data.val_center_crop=null",
        "paths.experiments_dir=exp",
        "name=t",
        "trainer.enable_progress_bar=false",
        cwd=tmp_path,
        fresh=True,
        WANDB_MODE="offline",
        WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
    )  # fmt: skip  (fresh: the import-time warnings are part of what it prints)
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 0, printed[-3000:]
    for noise in NOISE:
        assert noise not in printed
    last, best = (Path(re.search(rf"{kind} checkpoint: (\S+)", printed)[1]) for kind in ("last", "best"))
    assert last.parent == best.parent == Path("exp/t/stage1/checkpoints")


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_earlier_checkpoints(
    tmp_path, monkeypatch
):
    real_save = torch.save

    def full_disk_at_step_4(obj: object, f: io.BufferedWriter, *args: object, **kwargs: object) -> None:
        if isinstance(obj, dict) and obj.get("global_step") == 4:
            f.write(b"PK\x03\x04 partial")  # as torch does: its zip writer fails while handling the OSError
            failure = RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 2722560 vs 2722448"
            )
            failure.__context__ = OSError(errno.ENOSPC, "No space left on device")
            raise failure
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_at_step_4)
    with pytest.raises(
        StorageError,
        match=r"cannot save checkpoint \S+step0000004\S*\.ckpt: no space left on device; the checkpoints saved "
        r"before it are intact .*then continue with the same command and resume=auto",
    ) as err:
        train(compose_config(overrides(tmp_path, "sr", 1, 4, "stage1.val_every=2")))
    assert "\n" not in str(err.value)
    checkpoints = tmp_path / "test" / "stage1" / "checkpoints"
    assert read_checkpoint(checkpoints / "last.ckpt")["global_step"] == 2
    assert not list(checkpoints.glob(".*.tmp")), "the partial save was left behind"


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The ``error:`` line a command ended with, checked to be its only complaint (no traceback)."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return line


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_a_run_folder_under_a_regular_file_is_one_line(tmp_path, script):
    """What stops anyone, root included, from writing there: the experiments folder placed under a file."""
    (tmp_path / "file.txt").write_text("")
    experiments = tmp_path / "file.txt" / "experiments"
    given = ["task=sr", "stage=1", "debug=fast"] if script == "train.py" else ["method=bicubic", "task=sr"]
    line = one_error_line(run_cli(script, *given, f"paths.experiments_dir={experiments}"))
    option = "paths.experiments_dir=" if script == "train.py" else "output_dir="
    assert line.startswith(f"error: {option}{experiments}")
    assert line.endswith(f"cannot be a folder: {tmp_path / 'file.txt'} is a file; choose another {option}")


def fake_run(run_dir: Path) -> None:
    """A run folder as a finished run leaves it (what ``resume=auto`` continues)."""
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"not read: the folder is refused first")


def permissions_bind() -> bool:
    """Whether a folder without write permission refuses this process's files (not for root, which may
    write anywhere, unless it runs without the capability to override permissions)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except PermissionError:
            return True
        finally:
            os.chmod(folder, 0o755)
    return False


@pytest.mark.skipif(not permissions_bind(), reason="root writes in read-only folders: see the simulated case")
@pytest.mark.parametrize("case", ["new run", "resume", "eval"])
def test_a_read_only_experiments_folder_is_one_line(tmp_path, case):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    if case == "resume":
        fake_run(experiments / "t" / "stage1")
    folders = [experiments, *(p for p in experiments.rglob("*") if p.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        if case == "eval":
            proc = run_cli("eval.py", "method=bicubic", "task=sr", f"paths.experiments_dir={experiments}")
        else:
            resume = ["resume=auto"] if case == "resume" else []
            proc = run_cli(
                "train.py", "task=sr", "stage=1", "debug=fast", f"paths.experiments_dir={experiments}", "name=t",
                *resume,
            )  # fmt: skip
    finally:
        for folder in folders:
            folder.chmod(0o755)
    line = one_error_line(proc)
    option = "output_dir=" if case == "eval" else "paths.experiments_dir="
    refused = experiments / "t" / "stage1" if case == "resume" else experiments
    assert (
        f": cannot write in {refused} (permission denied); choose a writable folder with {option}<dir>"
        in line
    )


@pytest.mark.parametrize("case", ["new run", "resume"])
def test_a_read_only_experiments_folder_stops_train_before_anything_is_written(tmp_path, monkeypatch, case):
    """The same check from Python (``diffir.runs.train.train``), with a read-only file system simulated: root,
    who runs these tests in some containers, may write in folders whatever their permissions."""
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    if case == "resume":
        fake_run(experiments / "test" / "stage1")
    real = tempfile.TemporaryFile

    def read_only(*args: object, dir: str | Path, **kwargs: object) -> object:  # noqa: A002 - tempfile's name
        if Path(dir).is_relative_to(experiments):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    resume = ["resume=auto"] if case == "resume" else []
    cfg = compose_config(
        [*overrides(experiments.parent, "sr", 1, 2, *resume), f"paths.experiments_dir={experiments}"]
    )
    with pytest.raises(StorageError) as err:
        train(cfg)
    refused = experiments / "test" / "stage1" if case == "resume" else experiments
    assert str(err.value) == (
        f"paths.experiments_dir={experiments}: cannot write in {refused} (read-only file system); "
        "choose a writable folder with paths.experiments_dir=<dir>"
    )
    assert not list(experiments.rglob(".lock")) and not list(experiments.rglob("config.yaml"))


HELP_KEYS = {
    "train.py": ["task", "stage", "data", "model", "experiment", "debug", "name", "resume", "ckpt_path",
                 "trainer.devices", "logger", "paths.experiments_dir"],
    "eval.py": ["ckpt", "method", "task", "data", "metrics", "output_dir", "tile", "device"],
    "infer.py": ["ckpt", "input", "output", "mask", "tile", "device", "seed"],
}  # fmt: skip
COMPOSE = {"train.py": lambda *o: compose_config(list(o)), "eval.py": eval_cfg, "infer.py": infer_cfg}


def section(text: str, title: str) -> list[str]:
    """The lines of the help page's section ``title`` (up to the next blank line)."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    return lines[start : lines.index("", start)]


def settings(line: str) -> list[tuple[str, list[str]]]:
    """The ``key=value`` of a help line, each value split into its options (``a|b``; ``<dir>`` becomes 1)."""
    found = re.findall(r"(?<![\w.<\[])([a-z_][\w.]*)=(\S+)", line)
    return [
        (key, [re.sub(r"^<.*>$", "1", v) for v in value.rstrip("):,").split("|")]) for key, value in found
    ]


@pytest.mark.slow
@pytest.mark.parametrize("script", list(HELP_KEYS))
def test_help_is_a_short_page_of_keys_and_examples_that_exist(script):
    proc = run_cli(script, "--help")
    assert proc.returncode == 0, proc.stderr
    page = proc.stdout
    assert len(page.splitlines()) < 60, "Hydra's default page (the whole config) is back"
    assert "README" in page and "== Config ==" not in page
    keys = [settings(line) for line in section(page, "The keys people set:")]
    assert set(HELP_KEYS[script]) <= {key for line in keys for key, _ in line}
    compose = COMPOSE[script]
    for line in keys:  # every key and option of the page composes (an unknown one fails): the page cannot rot
        widest = max((len(options) for _, options in line), default=0)
        for n in range(widest):  # the n-th option of each key of the line, together
            compose(*(f"{key}={options[min(n, len(options) - 1)]}" for key, options in line))
    examples = section(page, "Examples:")
    assert len(examples) == 3
    for example in examples:
        command = shlex.split(example.split("#")[0])
        assert command[:2] == ["python", script]
        compose(*command[2:])


def tiny_folder(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    folder.mkdir()
    for i, (height, width) in enumerate(sizes):
        Image.fromarray(np.full((height, width, 3), 60 * i, np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_a_tiny_training_set_is_padded_and_validated_on_held_out_images_with_a_word_each(tmp_path, caplog):
    folder = tiny_folder(tmp_path / "photos", [(20, 24), (28, 36), (40, 40)])
    with caplog.at_level(logging.INFO, logger="diffir"):
        data = build_datamodule(
            compose_config(overrides(tmp_path, "sr", 1, 2, "data=folder", f"data.root={folder}"))
        )
    trained, validated = ({s.name for s in d.sources} for d in (data.train_set, data.val_set))
    assert len(validated) == 1 and len(trained) == 2 and not trained & validated
    padded = [r.getMessage() for r in caplog.records if "reflect-padded" in r.getMessage()]
    assert len(padded) == 1, "one line for the run, not one per image"
    assert padded[0].startswith("1 of the 2 training images are smaller than the 32x32 training patch")
    assert padded[0].endswith("use larger images or a smaller stage1.patch_size")
    assert f"validating on 1 of the 3 images of {folder}, held out of training" in caplog.text
    assert "validation uses" not in caplog.text


def test_a_single_image_leaves_nothing_to_validate_on_unless_asked(tmp_path, caplog):
    folder = tiny_folder(tmp_path / "photos", [(40, 40)])
    given = overrides(tmp_path, "sr", 1, 2, "data=folder", f"data.root={folder}")
    with pytest.raises(
        RunSetupError,
        match=r"has 1 image: nothing is left to validate on once it is trained on; give validation images with "
        r"data\.val_root=<dir>, or validate on the training image with data\.validate_on_train=true",
    ):
        build_datamodule(compose_config(given))
    with caplog.at_level(logging.WARNING, logger="diffir"):
        data = build_datamodule(compose_config([*given, "data.validate_on_train=true"]))
    assert [s.name for s in data.val_set.sources] == [s.name for s in data.train_set.sources] == ["img0"]
    (said,) = [r.getMessage() for r in caplog.records if "validation uses" in r.getMessage()]
    assert said.startswith(
        "validation uses 1 training image(s) (data.validate_on_train=true): its scores show"
    )
