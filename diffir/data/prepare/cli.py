"""The command line: ``python -m diffir.data.prepare <dataset> --root <dir> [--from-archive <file> ...]``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from diffir.errors import PrepareError

from .registry import DATASETS
from .run import prepare


def _sources_help() -> str:
    lines = ["datasets (sources, licence, what is made):"]
    for name, spec in DATASETS.items():
        lines.append(f"\n  {name}: {spec.title}\n    licence: {spec.licence}")
        for archive in spec.archives:
            how = archive.url or "download by hand"
            check = f", {archive.checksum}" if archive.checksum else ""
            lines.append(f"    {archive.filename}: {how}{check}\n      page: {archive.page}")
        if spec.notes:
            lines.append(f"    {spec.notes}")
    lines.append("\nLayouts and the matching training presets (data=<name>): data/README.md")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffir.data.prepare",
        description="Download (or take from --from-archive), extract and preprocess a dataset of the paper.",
        epilog=_sources_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", choices=list(DATASETS))
    parser.add_argument(
        "--root", type=Path, required=True, help="the data directory (the configs' paths.data_dir)"
    )
    parser.add_argument(
        "--from-archive",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="archives downloaded by hand (zip or tar, recognised by content); nothing is downloaded",
    )
    parser.add_argument(
        "--seed", type=int, help="places, celebahq: seed of the subsets and masks (default 0)"
    )
    parser.add_argument("--eval-size", type=int, help="places: evaluation images (default 30000)")
    parser.add_argument("--val-size", type=int, help="places, celebahq: validation images (default 2000)")
    parser.add_argument("--visual-test-size", type=int, help="celebahq: visual-test images (default 2000)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument("--force", action="store_true", help="prepare again from the archives")
    parser.add_argument(
        "--delete-archives", action="store_true", help="delete downloaded archives once extracted"
    )
    args = parser.parse_args(argv)
    options = {"seed": args.seed, "eval_size": args.eval_size, "val_size": args.val_size}
    options["visual_test_size"] = args.visual_test_size
    try:
        prepare(
            args.dataset,
            args.root,
            args.from_archive,
            options=options,
            workers=args.workers,
            force=args.force,
            delete_archives=args.delete_archives,
        )
    except PrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
