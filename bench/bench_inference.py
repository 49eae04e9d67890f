"""Tiled against untiled inference on one large image: peak memory, time, and how far the outputs differ.

    python -m bench.bench_inference [--size 1000x800] [--tile 128] [--overlap 32] [--prior-max-side N]
                                    [--threads 1] [--ckpt FILE]   # from the repository root

Restores one W x H LQ photo (default 1000 x 800, a 4000 x 3200 output) with the small SR x4 model
(``model_preset("sr", "small")``, random weights unless ``--ckpt`` gives a stage-2 SR checkpoint) once whole
and once with ``restore_tiled`` (shared whole-image prior), and prints both runs and their ratios.

Memory is measured as peak RSS, because tracemalloc does not see torch's CPU allocator: each run happens in
a fresh subprocess (peak RSS never goes down within a process), which reports its peak
(``getrusage().ru_maxrss``) and its RSS just before inference (model and input loaded), so the difference
is what inference itself needed. The output buffers (4000 x 3200 x 3 float32 = 154 MB) count in both.

Runs use one CPU thread by default: on a busy machine torch's per-operator thread barriers dominate small
tiles and make time ratios meaningless (``--threads 0`` keeps torch's default).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import skimage.data
import torch

from diffir.checkpoint import load_model
from diffir.model_config import model_preset
from diffir.models import build_model
from diffir.restoration import restore, restore_tiled, start_noise

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    """The current resident set size of this process (Linux /proc)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def run_variant(args: argparse.Namespace) -> None:
    """Child process: restore the photo one way, save the output, print a JSON line of measurements."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.ckpt)[0] if args.ckpt else build_model("sr", 2, 4, **model_preset("sr", "small"))
    model.eval()
    width, height = map(int, args.size.split("x"))
    photo = cv2.resize(skimage.data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    lq = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    noise = start_noise(model, 1, seed=0)
    before = rss_mb()
    start = time.perf_counter()
    if args.variant == "tiled":
        out = restore_tiled(model, lq, args.tile, args.overlap, noise, prior_max_side=args.prior_max_side)
    else:
        out = restore(model, lq, noise=noise)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    torch.save(out, args.out)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "rss_before_mb": before}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="1000x800", help="LQ width x height")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--prior-max-side", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run (0: torch's default)")
    parser.add_argument(
        "--ckpt", default=None, help="a stage-2 SR x4 checkpoint (default: random small model)"
    )
    parser.add_argument("--variant", choices=["tiled", "untiled"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args)
        return

    passthrough = sys.argv[1:]
    runs, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("untiled", "tiled"):
            outputs[variant] = Path(tmp) / f"{variant}.pt"
            command = [sys.executable, "-m", "bench.bench_inference", *passthrough, "--variant", variant]
            command += ["--out", str(outputs[variant])]
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            if result.returncode:
                sys.exit(f"the {variant} run failed:\n{result.stderr}")
            runs[variant] = json.loads(result.stdout.strip().splitlines()[-1])
        diff = (torch.load(outputs["tiled"]) - torch.load(outputs["untiled"])).abs()

    threads = args.threads or torch.get_num_threads()
    print(f"SR x4 small model, LQ {args.size} -> x4; tiled: tile={args.tile} overlap={args.overlap} "
          f"prior_max_side={args.prior_max_side}; threads={threads}")  # fmt: skip
    print(f"{'':10}{'seconds':>10}{'peak RSS MB':>14}{'inference MB':>14}")
    for variant, r in runs.items():
        r["inference_mb"] = r["peak_rss_mb"] - r["rss_before_mb"]
        print(f"{variant:10}{r['seconds']:>10.1f}{r['peak_rss_mb']:>14.0f}{r['inference_mb']:>14.0f}")
    tiled, untiled = runs["tiled"], runs["untiled"]
    print(
        f"tiled / untiled: time {tiled['seconds'] / untiled['seconds']:.2f}x, peak RSS "
        f"{tiled['peak_rss_mb'] / untiled['peak_rss_mb']:.2f}x, inference memory "
        f"{tiled['inference_mb'] / untiled['inference_mb']:.2f}x"
    )
    print(f"max |tiled - untiled| = {diff.max():.4f} (mean {diff.mean():.5f}) on a [0, 1] scale")


if __name__ == "__main__":
    main()
