"""The runs: what ``train.py``, ``eval.py``, ``infer.py`` and ``make demo`` run, on top of the library (models,
data, losses, lit, evaluation, metrics, restoration, restorer, checkpoint), which never imports from here.

- :mod:`~diffir.runs.cli`: the Hydra entry points (``train.py`` / ``eval.py`` / ``infer.py``, the ``diffir-*``
  console scripts) and the Hydra callback that checks the run folder can be written;
- :mod:`~diffir.runs.train`: the training run (run folder, trainer, fit, summary, the next command);
  :mod:`~diffir.runs.checks` its config checks, :mod:`~diffir.runs.build` its data and LightningModule;
- :mod:`~diffir.runs.evaluate`: the ``eval.py`` run; :mod:`~diffir.runs.infer`: the ``infer.py`` run;
- :mod:`~diffir.runs.demo`: ``python -m diffir.runs.demo`` (``make demo``), train both stages and compare;
- :mod:`~diffir.runs.loggers`: W&B, offline without an API key.
"""
