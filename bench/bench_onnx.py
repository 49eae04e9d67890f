"""onnxruntime against diffir's eager PyTorch path on the SR x4 paper model, side by side in one run.

    python -m bench.bench_onnx                 # SR x4 paper model (random weights), LQ 64 and 128, 5 rounds
    python -m bench.bench_onnx --tiny          # the tiny model at LQ 16 and 32: a smoke run of a few seconds
    python -m bench.bench_onnx --sizes 64 --rounds 7 --threads 2

The model (``build_model("sr", 2, 4, **model_preset("sr", "paper"))``, stage 2, seeded random weights) is
exported with ``diffir.export`` into a temporary folder (export time and file size are printed), then each
LQ size is restored by both backends in turn, round by round (after a warm-up call each), batch 1, the same
start vector: ``eager`` is :func:`diffir.restoration.restore` (channels-last, composed head and attention,
``torch.inference_mode``), ``onnxruntime`` the graph in an onnxruntime CPU session
(:class:`diffir.onnx_runtime.OnnxModel`, default graph optimisations). Reported per size: the median seconds
of each and the median over rounds of the onnxruntime / eager time of the same round, and the largest
difference between their outputs. Both use ``--threads`` threads (default 1, as ``bench.bench_speed``:
robust to other load on a shared machine); times are the process CPU time (``--clock wall``: wall clock).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.bench_speed import interleave
from diffir.export import export_onnx
from diffir.model_config import model_preset
from diffir.models import build_model
from diffir.onnx_runtime import OnnxModel
from diffir.restoration import restore, start_noise


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="the tiny model at LQ 16 and 32, 2 rounds")
    parser.add_argument("--sizes", type=int, nargs="+", help="LQ sides (default 64 128; --tiny 16 32)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --tiny 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads of both backends (default 1)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()
    preset = "tiny" if args.tiny else "paper"
    sizes = args.sizes or ([16, 32] if args.tiny else [64, 128])
    rounds = args.rounds or (2 if args.tiny else 5)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = build_model("sr", 2, 4, **model_preset("sr", preset)).eval()
    noise = start_noise(model, 1, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        path = export_onnx(model, Path(folder) / f"sr_x4_{preset}.onnx")
        print(
            f"SR x4 {preset} model, {sum(p.numel() for p in model.parameters()):,} parameters: graph "
            f"{path.stat().st_size / 2**20:.1f} MiB, exported in {time.perf_counter() - start:.0f} s; "
            f"{args.threads} thread(s), {args.clock} time, median of {rounds} rounds"
        )
        graph = OnnxModel(path, threads=args.threads)
        print(
            f"\n  {'LQ':>7}{'eager s':>10}{'onnxruntime s':>15}{'onnxruntime / eager':>21}{'max |diff|':>12}"
        )
        for size in sizes:
            lq = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
            runs = {
                "eager": lambda lq=lq: restore(model, lq, noise=noise),
                "onnxruntime": lambda lq=lq: graph(lq, noise=noise),
            }
            times = interleave(runs, rounds, clock)
            ratio = statistics.median(
                o / e for o, e in zip(times["onnxruntime"], times["eager"], strict=True)
            )
            difference = float((runs["onnxruntime"]() - runs["eager"]()).abs().max())
            eager, ort = (statistics.median(times[name]) for name in runs)
            print(f"  {size:>3}x{size:<3}{eager:>10.3f}{ort:>15.3f}{ratio:>21.3f}{difference:>12.1e}")


if __name__ == "__main__":
    main()
