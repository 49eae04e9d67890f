"""The run behind ``python eval.py``: score checkpoints and baselines on benchmark sets, side by side.

For every dataset and method it records the mean and per-image metrics of the task's protocol
(docs/method.md §5), the parameters, the MACs of one image (torch's FLOP counter, MACs = FLOPs / 2)
and the seconds per image, and writes ``metrics.json``, ``metrics.csv`` (one row per dataset and method),
``per_image.csv``, ``metrics.md``, the restored images and comparison grids to ``output_dir``.

Modules: ``methods`` (what is evaluated), ``samples`` (on which images), ``protocol`` (with which metrics),
``run`` (the loop), ``grids`` (comparison images), ``report`` (the result files).
"""

from .grids import comparison_grid
from .report import markdown_table
from .run import evaluate

__all__ = ["comparison_grid", "evaluate", "markdown_table"]
