"""Run ``python <script> <args>`` (train.py, eval.py, infer.py) as a separate process and get what it printed.

Starting Python and importing torch, Lightning and diffir costs about 12 s of CPU per command, most of the
end-to-end tests' time. :func:`run_script` therefore forks this test process, which has imported them already,
and runs the script in the child as ``python`` would (``__main__``, ``sys.argv``, working directory,
environment, file descriptors 1 and 2, exit status). ``fresh=True`` starts a new interpreter instead, for the
tests about what a cold start prints (import-time warnings) or that need a clean process.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# Python's own warning filters, before pytest records warnings per test: the child prints warnings as python would
_PYTHON_WARNING_FILTERS = list(warnings.filters)


def run_script(
    script: str,
    *args: str,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """``python <REPO/script> <args>`` on one thread: its exit status (``-N`` if killed by signal N) and output."""
    command = [sys.executable, str(REPO / script), *args]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if fresh:
        return subprocess.run(
            command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
        )
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        sys.stdout.flush(), sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _run_as_main(command[1:], cwd, environment, out, err)
        status = _wait(pid, timeout, command)
        return subprocess.CompletedProcess(command, status, out.read_text(), err.read_text())


def _run_as_main(argv: list[str], cwd: Path, environment: dict[str, str], out: Path, err: Path) -> None:
    code = 1
    try:
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        # new stream objects: the parent's may be pytest's capture, or locked by one of its threads
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        signal.signal(signal.SIGINT, signal.default_int_handler)  # python's own handlers
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        warnings.filters[:] = _PYTHON_WARNING_FILTERS
        warnings.showwarning = warnings._showwarning_orig  # type: ignore[attr-defined]
        warnings._filters_mutated()  # type: ignore[attr-defined]
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environment)
        torch.set_num_threads(int(environment["OMP_NUM_THREADS"]))
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
        sys.argv = list(argv)
        try:
            runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:  # sys.exit("message"), as python prints it
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - as python: the traceback on stderr, status 1
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # exiting anyway
                stream.flush()
        os._exit(code)


def _wait(pid: int, timeout: float, command: list[str]) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise subprocess.TimeoutExpired(command, timeout)
        time.sleep(0.05)
