"""Inference and training-step speed of the paper models against the official-order reference, in one run.

    python -m bench.bench_speed                      # quick: every task's paper model at small sizes
    python -m bench.bench_speed --paper              # the issue's sizes (SR x4 at LQ 64 and 128, ...), 7 rounds
    python -m bench.bench_speed --tasks sr --sizes 64 128 --rounds 5 --compile --threads 1
    python -m bench.bench_speed --tasks deblur --memory-only --memory-sizes 128 256 512   # does 512² fit?

For each task's paper model (stage 2, random weights, batch 1) the variants run interleaved, round by round,
in one process, and each time is reported as a ratio to the baseline of the same round (median over rounds):

- ``reference``: the same weights computed in the official order (``diffir.models.reference``: permuting
  LayerNorm, ``torch.var``, plain 1×1 convolutions, the SR head layer by layer, NCHW; tested equal to ours),
  which runs at the official code's own speed (the reference took 0.99-1.05x the time of the official
  ``DiffIR_S2``, run beside it in one process on the same weights, at LQ 64 and 1.04x at LQ 128);
- ``diffir``: the default path (channels-last, fused LayerNorm, oneDNN 1x1 convolutions, composed SR head
  and attention projection);
- ``diffir-nchw``: the same code in NCHW memory (what channels-last brings);
- ``diffir-bf16``: the default under CPU bf16 autocast (``trainer.precision=bf16-mixed``), when supported;
- ``diffir-ckpt`` (training): with activation checkpointing of the DIRformer blocks;
- ``diffir-compiled`` (``--compile``): ``torch.compile``d, after a warm-up whose compile time is reported.

A training step is the teacher prior (CPEN_S1, no grad), the stage-2 forward (training chain), L1(out, GT) +
L1(ẑ, z), backward, Adam and the EMA update; diffir's variants build Adam as diffir's training does (fused),
the reference as BasicSR does (``torch.optim.Adam`` defaults). Times are the process CPU time by default
(one thread: the compute, and robust to other load on a shared machine); ``--clock wall`` uses wall-clock
time.

Also printed: the share of inference spent on prior estimation (CPEN_S2 + the denoiser), the DIRformer's
MACs (``diffir.summary``: as the official code computes them, and as diffir executes them, composed) and the
executed MACs per second against this machine's measured float32 matmul rate, and the peak memory of a
training step with and without checkpointing. Memory is measured in a fresh child process per variant
(torch's CPU allocator is invisible to tracemalloc): after a warm-up step (so Adam's state exists), the peak
resident set size is reset (``/proc/self/clear_refs``), and the peak during one more step minus the size
before it is the step's memory, reported up to the end of backward (activations kept for backward, gradients,
temporaries) and for the whole step (Adam's update included). The child runs with glibc's
``MALLOC_MMAP_THRESHOLD_=65536``: every block of 64 kB or more is mapped on its own and returned to the OS
when freed, so the resident size follows the live tensors (with the default, adaptive threshold freed
activation blocks stay resident and the step's peak is under-counted). ``--memory-sizes`` measures several
LQ sizes; a variant that would not fit in this machine's memory at a size (estimated from its largest
measured size by the pixel ratio) is reported by that estimate, marked ``~``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from diffir.lit.optim import build_optimizer
from diffir.model_config import model_preset
from diffir.models import DiffIRS2, build_model, reference_model
from diffir.models.switches import compile_model, compile_seconds, set_channels_last, set_checkpointing
from diffir.summary import summarize
from diffir.tasks import task_facts

REPO = Path(__file__).resolve().parents[1]
TASKS = {"sr": 4, "deblur": 1, "inpainting": 1}  # task -> scale
QUICK_SIZES = {"sr": [64], "deblur": [64], "inpainting": [64]}  # LQ sides
PAPER_SIZES = {"sr": [64, 128], "deblur": [128, 256], "inpainting": [128, 256]}  # training: the first


def build(task: str) -> DiffIRS2:
    torch.manual_seed(0)
    return build_model(task, 2, TASKS[task], **model_preset(task, "paper"))


def bf16_supported() -> bool:
    """CPU bf16 autocast runs (and pays) where the CPU has native bf16 dot products (AVX512-BF16 / AMX)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def inputs(task: str, size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    scale = TASKS[task]
    lq = torch.rand(1, task_facts(task).input_channels, size, size, generator=generator)
    return {
        "lq": lq,
        "gt": torch.rand(1, 3, size * scale, size * scale, generator=generator),
        "noise": torch.randn(1, 256, generator=generator),
    }


def inference_fn(model: DiffIRS2, data: dict, bf16: bool = False) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return model(data["lq"], noise=data["noise"])[0]

    return run


def training_fn(
    model: DiffIRS2, teacher: torch.nn.Module, data: dict, bf16: bool = False, official: bool = False
) -> Callable[[], None]:
    """One stage-2 step on ``model`` (its own Adam and EMA copy); ``teacher`` is a stage-1 model's CPEN.

    The optimiser is built as diffir's training builds it (fused Adam), or, with ``official``, as BasicSR
    does (``torch.optim.Adam`` with its defaults: the per-parameter loop on CPU).
    """
    model = model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    adam = functools.partial(torch.optim.Adam, lr=1e-8)
    optimizer = adam(params=params) if official else build_optimizer(adam, params)
    ema = copy.deepcopy(model).requires_grad_(False)

    def step(after_backward: Callable[[], None] | None = None) -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            with torch.no_grad():
                z = teacher(data["lq"], data["gt"])
            out, chain = model(data["lq"], z_teacher=z, noise=data["noise"])
            loss = F.l1_loss(out.float(), data["gt"]) + F.l1_loss(chain[-1].float(), z.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1e-3)

    return step


def interleave(
    variants: dict[str, Callable], rounds: int, clock: Callable[[], float]
) -> dict[str, list[float]]:
    """Time each variant once per round, in turn (after one warm-up call each)."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return times


BASELINE = "reference"


def ratios(times: dict[str, list[float]], baseline: str = BASELINE) -> dict[str, tuple[float, float]]:
    """Per variant: (median seconds, median over rounds of the time / the same round's baseline time)."""
    return {
        name: (
            statistics.median(t),
            statistics.median(a / b for a, b in zip(t, times[baseline], strict=True)),
        )
        for name, t in times.items()
    }


def print_table(title: str, rows: dict[str, tuple[float, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'variant':<18}{'seconds':>10}{'/ ' + BASELINE:>13}{'speed-up':>10}")
    for name, (seconds, ratio) in rows.items():
        print(f"  {name:<18}{seconds:>10.3f}{ratio:>13.3f}{1 / ratio:>9.2f}x")


def matmul_rate(clock: Callable[[], float], n: int = 1024, repeats: int = 10) -> float:
    """This machine's float32 matrix-product rate (GFLOP/s, best of ``repeats``) on the current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        a @ b
        best = min(best, clock() - start)
    return 2 * n**3 / best / 1e9


def status_mb(key: str) -> float:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in MB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+) kB", status).group(1)) / 1024


def memory_child(args: argparse.Namespace) -> None:
    """Child process: a warm-up step (Adam's state exists after it), then the peak memory (MB) above the
    resident size before one more step, up to the end of backward and for the whole step, printed as JSON."""
    torch.set_num_threads(args.threads)
    task, size = args.memory_task, args.memory_size
    model = build(task)
    teacher = build_model(task, 1, TASKS[task], **model_preset(task, "paper")).E.requires_grad_(False).eval()
    if args.memory_variant == BASELINE:
        model, teacher = reference_model(model), reference_model(teacher)
    set_checkpointing(model, args.memory_variant == "diffir-ckpt")
    data = inputs(task, size, torch.Generator().manual_seed(0))
    step = training_fn(model, teacher, data, official=args.memory_variant == BASELINE)
    step()
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current size (Linux)
    before, peaks = status_mb("VmRSS"), {}
    step(after_backward=lambda: peaks.update(backward_mb=status_mb("VmHWM") - before))
    print(json.dumps({**peaks, "step_mb": status_mb("VmHWM") - before}))


MEMORY_VARIANTS = (BASELINE, "diffir", "diffir-ckpt")


def available_mb() -> float:
    """``MemAvailable`` of this machine (MB): what a child may take before the kernel starts killing."""
    return int(re.search(r"MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text()).group(1)) / 1024


def memory_run(task: str, size: int, variant: str, threads: int) -> dict[str, float]:
    """One variant's training-step memory at LQ ``size``, in a fresh child process."""
    command = [sys.executable, "-m", "bench.bench_speed", "--threads", str(threads)]
    command += ["--memory-task", task, "--memory-size", str(size), "--memory-variant", variant]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # see the module docstring
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if run.returncode:
        sys.exit(f"the memory run of {variant} at {size}x{size} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def training_memory(task: str, sizes: list[int], threads: int) -> dict[int, dict[str, dict]]:
    """Peak memory of each variant's training step at each LQ size (``backward_mb``: forward + backward, the
    activations; ``step_mb``: the whole step, Adam's update included), each in a fresh process.

    Activation memory grows with the pixels: a run whose estimate from the variant's largest measured size
    (scaled by the pixel ratio) would not fit in 80 % of this machine's available memory is not started; its
    estimate is reported instead, marked ``extrapolated``."""
    result: dict[int, dict[str, dict]] = {}
    measured: dict[str, tuple[int, dict]] = {}
    for size in sorted(sizes):
        result[size] = {}
        for variant in MEMORY_VARIANTS:
            if variant in measured:
                base, values = measured[variant]
                estimate = {k: v * (size / base) ** 2 for k, v in values.items()}
                if estimate["step_mb"] > 0.8 * available_mb():
                    result[size][variant] = {**estimate, "extrapolated_from": base}
                    continue
            result[size][variant] = memory_run(task, size, variant, threads)
            measured[variant] = (size, result[size][variant])
    return result


def print_memory(task: str, memory: dict[int, dict[str, dict]]) -> None:
    """One table of the training-step peak memory per LQ size and variant."""
    print(f"\n{task}: peak memory of a training step (MB; forward + backward / whole step with Adam)")
    print(f"  {'LQ size':<10}" + "".join(f"{v:>22}" for v in MEMORY_VARIANTS) + f"{'ckpt / diffir':>15}")
    for size, row in memory.items():
        cells = []
        for variant in MEMORY_VARIANTS:
            values = row[variant]
            mark = "~" if "extrapolated_from" in values else ""
            cells.append(f"{mark}{values['backward_mb']:.0f} / {mark}{values['step_mb']:.0f}")
        ratio = row["diffir-ckpt"]["backward_mb"] / row["diffir"]["backward_mb"]
        print(f"  {f'{size}x{size}':<10}" + "".join(f"{c:>22}" for c in cells) + f"{ratio:>15.2f}")
    if any("extrapolated_from" in v for row in memory.values() for v in row.values()):
        print(
            f"  ~ extrapolated by pixels from the largest measured size: would not fit here ({available_mb():.0f} MB available)"
        )


def bench_task(task: str, sizes: list[int], args: argparse.Namespace, clock, rate: float) -> dict:
    """All measurements of one task; prints its tables and returns them."""
    scale = TASKS[task]
    ours = build(task)
    teacher = build_model(task, 1, scale, **model_preset(task, "paper")).E.requires_grad_(False).eval()
    variants = {BASELINE: reference_model(ours), "diffir": ours}
    variants["diffir-nchw"] = set_channels_last(copy.deepcopy(ours), False)
    teachers = {
        BASELINE: reference_model(teacher),
        "diffir-nchw": set_channels_last(copy.deepcopy(teacher), False),
    }
    bf16 = bf16_supported() and not args.no_bf16
    report: dict = {"task": task, "scale": scale, "inference": {}, "training": {}}
    compiled = None
    if args.compile:
        compiled = compile_model(copy.deepcopy(ours))
    for size in sizes:
        data = inputs(task, size, torch.Generator().manual_seed(size))
        runs = {name: inference_fn(model.eval(), data) for name, model in variants.items()}
        if bf16:
            runs["diffir-bf16"] = inference_fn(ours.eval(), data, bf16=True)
        if compiled is not None:
            before = compile_seconds()
            inference_fn(compiled.eval(), data)()
            report["inference_compile_s"] = compile_seconds() - before
            runs["diffir-compiled"] = inference_fn(compiled, data)
        # the prior (CPEN_S2 + the 4 denoiser steps) and the DIRformer alone, in the same rounds
        with torch.no_grad():
            z = ours.estimate_prior(data["lq"], noise=data["noise"])[-1]

        def prior(data=data) -> None:
            with torch.inference_mode():
                ours.estimate_prior(data["lq"], noise=data["noise"])

        def dirformer(data=data, z=z) -> None:
            with torch.inference_mode():
                ours.G(data["lq"], z)

        times = interleave({**runs, "prior": prior, "G": dirformer}, args.rounds, clock)
        parts = {k: statistics.median(times.pop(k)) for k in ("prior", "G")}
        rows = ratios(times)
        print_table(f"{task} x{scale} paper model, inference, LQ {size}x{size} ({args.rounds} rounds)", rows)
        macs = summarize(ours.eval(), (data["lq"],))["components"]["G"]["macs"]
        executed = summarize(ours.eval(), (data["lq"],), layer_by_layer=False)["components"]["G"]["macs"]
        mac_rate = executed / parts["G"] / 1e9
        share = parts["prior"] / rows["diffir"][0]
        print(f"  prior estimation (CPEN_S2 + denoiser): {share:.1%} of the diffir inference time")
        print(
            f"  DIRformer: {macs / 1e9:.1f} GMACs layer by layer (the official count), {executed / 1e9:.1f} "
            f"executed (composed SR head and attention) in {parts['G']:.3f} s = {mac_rate:.1f} GMAC/s, "
            f"{mac_rate / (rate / 2):.0%} of the matmul rate ({rate / 2:.1f} GMAC/s)"
        )
        report["inference"][size] = {
            "rows": rows,
            "prior_share": share,
            "dirformer_gmacs": macs / 1e9,
            "dirformer_gmacs_executed": executed / 1e9,
            "dirformer_gmac_per_s": mac_rate,
        }

    size = sizes[0]
    data = inputs(task, size, torch.Generator().manual_seed(size))
    steps = {
        name: training_fn(copy.deepcopy(model), teachers.get(name, teacher), data, official=name == BASELINE)
        for name, model in variants.items()
    }
    steps["diffir-ckpt"] = training_fn(set_checkpointing(copy.deepcopy(ours), True), teacher, data)
    if bf16:
        steps["diffir-bf16"] = training_fn(copy.deepcopy(ours), teacher, data, bf16=True)
    if compiled is not None:
        step = training_fn(compile_model(copy.deepcopy(ours)), teacher, data)
        before = compile_seconds()
        step()
        report["training_compile_s"] = compile_seconds() - before
        steps["diffir-compiled"] = step
    rows = ratios(interleave(steps, args.rounds, clock))
    print_table(
        f"{task} x{scale} paper model, training step, batch 1, LQ {size}x{size} ({args.rounds} rounds)", rows
    )
    report["training"] = {"size": size, "rows": rows}
    for key in ("inference_compile_s", "training_compile_s"):
        if key in report:
            print(
                f"  {key.replace('_', ' ')}: {report[key]:.0f} s (cold cache; cached in $TORCHINDUCTOR_CACHE_DIR)"
            )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    parser.add_argument(
        "--sizes", nargs="+", type=int, help="LQ sides (default: quick, or the paper's with --paper)"
    )
    parser.add_argument("--paper", action="store_true", help="the issue's sizes and 7 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, --paper 7)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the issue's comparison: 1)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument(
        "--compile", action="store_true", help="add torch.compile variants (minutes per model)"
    )
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast variants")
    parser.add_argument("--no-memory", action="store_true", help="skip the training-memory child processes")
    parser.add_argument(
        "--memory-sizes",
        nargs="+",
        type=int,
        help="LQ sides of the training-memory measurement (default: the training size)",
    )
    parser.add_argument("--memory-only", action="store_true", help="only the training-memory measurement")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    for hidden in ("--memory-task", "--memory-variant"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--memory-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_task:
        memory_child(args)
        return
    args.rounds = args.rounds or (7 if args.paper else 3)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rate = matmul_rate(clock)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.clock} time; float32 matmul rate "
        f"{rate:.1f} GFLOP/s ({rate / 2:.1f} GMAC/s); bf16 autocast: {bf16_supported() and not args.no_bf16}"
    )
    reports = []
    for task in args.tasks:
        sizes = args.sizes or (PAPER_SIZES if args.paper else QUICK_SIZES)[task]
        report = {"task": task} if args.memory_only else bench_task(task, sizes, args, clock, rate)
        if not args.no_memory:
            memory = training_memory(task, args.memory_sizes or sizes[:1], args.threads)
            print_memory(task, memory)
            report["training_memory_mb"] = memory
        reports.append(report)
    if args.json:
        args.json.write_text(json.dumps({"matmul_gflops": rate, "tasks": reports}, indent=1))


if __name__ == "__main__":
    main()
