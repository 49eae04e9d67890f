"""What ``python eval.py`` (:mod:`diffir.runs.evaluate`) scores checkpoints and baselines with, side by side.

For every dataset and method it records the mean and per-image metrics of the task's protocol
(docs/method.md §5), the parameters, the MACs of one image (torch's FLOP counter, MACs = FLOPs / 2)
and the seconds per image, and writes ``metrics.json``, ``metrics.csv`` (one row per dataset and method),
``per_image.csv``, ``metrics.md``, the restored images and comparison grids to ``output_dir``.

Modules: ``methods`` (what is evaluated), ``samples`` (on which images), ``protocol`` (with which metrics),
``grids`` (comparison images), ``report`` (the result files).
"""

from .grids import comparison_grid
from .report import markdown_table

__all__ = ["comparison_grid", "markdown_table"]
