"""Third-party messages a run prints that the user can neither act on nor needs, silenced by message and origin.

:func:`quiet` is called where runs start (the entry points, :func:`diffir.runs.train.train`): importing diffir
changes no warning filter or logger.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category, module regex: "" for any) of warnings that say nothing about the user's run.
WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # lightning's pytree helper builds torch's deprecated LeafSpec (torch >= 2.10): lightning's to change
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
    ),
    # intended here: checkpoints hold the state *after* step N's update (what step N means on resume)
    (r".*Using ModelCheckpoint with manual optimization", Warning, ""),
    # the EMA copy and the stage-2 teacher stay in eval mode while the student trains
    (r".*module\(s\) in eval mode at the start of training", Warning, ""),
    # validation metrics are reduced over all processes by MetricSuite itself, not by Lightning's sync_dist
    (r".*self\.log\('val/.*sync_dist=True", Warning, ""),
)
# (logger, message prefix) of log records that advertise rather than inform.
LOG_RECORDS = (
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),
    ("lightning.fabric.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),
)


class _DropMessages(logging.Filter):
    """Drops the records of one logger whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet() -> None:
    """Install the filters (idempotent: a logger gets its filter once however often runs start)."""
    for message, category, module in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name in {name for name, _ in LOG_RECORDS}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(tuple(p for n, p in LOG_RECORDS if n == name)))
