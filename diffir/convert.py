"""``python -m diffir.convert <official.pth> --out <file or folder> [--format safetensors] [--task <t> --stage <1|2>
[--set key=value ...]]``

Turns an official DiffIR checkpoint (BasicSR ``.pth`` with ``params`` / ``params_ema``, a bare state dict, or
a LaMa-style inpainting ``.ckpt``) into a self-describing diffir model file that training (as the stage-1
start: ``stage1_ckpt=<file>``), ``eval.py`` and ``infer.py`` accept, or, with ``--format safetensors``, a model
folder (``config.json`` + ``model.safetensors``, see ``diffir.save_pretrained``) that they accept too. The task,
stage, scale and network options are read from the checkpoint's tensors; ``--task`` and ``--stage`` (both)
choose them instead, with official options that differ from the task's paper configuration given as ``--set``
(e.g. ``--set scale=2``).
"""

from __future__ import annotations

import argparse
import sys

import yaml

from .checkpoint import CheckpointError, atomic_save, model_record
from .compat import load_official
from .models import TASKS
from .pretrained import save_pretrained

FORMATS = ("pth", "safetensors")


def parse_options(items: list[str]) -> dict:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value (e.g. --set scale=2), got {item!r}")
        options[key] = yaml.safe_load(value)
    return options


def add_official_options(parser: argparse.ArgumentParser, stages: tuple[int, ...]) -> None:
    """``--task``, ``--stage`` and ``--set key=value`` for an official file (read with :func:`official_options`);
    without them everything is read from the file's tensors. Shared by diffir.convert and diffir.export."""
    parser.add_argument("--task", choices=TASKS, help="an official file's task (default: from its tensors)")
    parser.add_argument(
        "--stage", type=int, choices=stages, help="an official file's stage (default: from its tensors)"
    )
    parser.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an official network option differing from the paper configuration (repeatable; e.g. --set scale=2)",
    )


def official_options(args: argparse.Namespace) -> dict:
    """The options :func:`add_official_options` parsed, as :func:`diffir.compat.load_official` takes them."""
    return dict(task=args.task, stage=args.stage, **parse_options(args.options))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffir.convert", description=__doc__.split("\n\n")[1])
    parser.add_argument("checkpoint", help="official .pth / .ckpt file")
    parser.add_argument("--out", required=True, help="where to write the diffir model file (or folder)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="pth",
        help="pth: one diffir model file (default); safetensors: a folder with config.json and model.safetensors",
    )
    add_official_options(parser, stages=(1, 2))
    args = parser.parse_args(argv)
    try:
        model = load_official(args.checkpoint, **official_options(args))
        if args.format == "safetensors":
            save_pretrained(model, args.out)
        else:
            atomic_save(model_record(model.config, model.state_dict()), args.out)
    except CheckpointError as err:
        sys.exit(f"error: {args.checkpoint}: {err}")
    params = sum(p.numel() for p in model.parameters())
    config = model.config
    scale = f" x{config['scale']}" if config["task"] == "sr" else ""
    print(
        f"wrote {args.out}: DiffIR stage {config['stage']} ({config['task']}{scale}), {params:,} parameters"
    )


if __name__ == "__main__":
    main()
