"""``python -m diffir.convert <official.pth> --task <t> --stage <1|2> --out <file> [--set key=value ...]``

Turns an official DiffIR checkpoint (BasicSR ``.pth`` with ``params`` / ``params_ema``, a bare state dict, or
a LaMa-style inpainting ``.ckpt``) into a self-describing diffir model file that training (as the stage-1
start: ``stage1_ckpt=<file>``), ``eval.py`` and ``infer.py`` accept. Official network options that differ
from the task's paper configuration are given with ``--set`` (e.g. ``--set scale=2``).
"""

from __future__ import annotations

import argparse
import sys

import yaml

from .checkpoint import CheckpointError, atomic_save, model_record
from .compat import load_official
from .models import TASKS


def parse_options(items: list[str]) -> dict:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value (e.g. --set scale=2), got {item!r}")
        options[key] = yaml.safe_load(value)
    return options


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffir.convert", description=__doc__.split("\n\n")[1])
    parser.add_argument("checkpoint", help="official .pth / .ckpt file")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--stage", required=True, type=int, choices=(1, 2))
    parser.add_argument("--out", required=True, help="where to write the diffir model file")
    parser.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="official network option differing from the paper configuration (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        model = load_official(args.checkpoint, args.task, args.stage, **parse_options(args.options))
    except CheckpointError as err:
        sys.exit(f"error: {args.checkpoint}: {err}")
    atomic_save(model_record(model.config, model.state_dict()), args.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: DiffIR stage {args.stage} ({args.task}), {params:,} parameters")


if __name__ == "__main__":
    main()
