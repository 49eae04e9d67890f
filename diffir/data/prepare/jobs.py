"""The preprocessing jobs: in this process, or in a pool of spawned processes with torch on one thread each;
errors name the job's input file."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
from tqdm import tqdm

from diffir.errors import PrepareError


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """torch on one thread: the jobs run in parallel processes, and multi-threaded resizing of small images on
    a busy machine is 20x slower than single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _init_worker() -> None:
    torch.set_num_threads(1)


def _named(function: Callable[..., Any], *job: Any) -> Any:
    """``function(*job)``, with errors naming the job's input file (``job[0]``)."""
    try:
        return function(*job)
    except PrepareError:
        raise
    except Exception as err:
        raise PrepareError(f"{job[0]}: {type(err).__name__}: {err}") from err


def run_jobs(function: Callable[..., Any], jobs: Sequence[tuple], workers: int, desc: str) -> list[Any]:
    """``function(*job)`` for every job, with a progress bar: in this process, or in ``workers`` processes."""
    named = functools.partial(_named, function)
    if workers <= 1 or len(jobs) <= 1:
        with _single_threaded():
            return [named(*job) for job in tqdm(jobs, desc=desc, disable=None, leave=False)]
    context = multiprocessing.get_context("spawn")  # fork after torch has started threads can deadlock
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        results = pool.map(named, *zip(*jobs, strict=True), chunksize=max(1, len(jobs) // (workers * 16)))
        return list(tqdm(results, total=len(jobs), desc=desc, disable=None, leave=False))
