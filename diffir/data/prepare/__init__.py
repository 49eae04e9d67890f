"""Get the paper's datasets and prepare them as the official code does, into the layouts of ``conf/data``.

    python -m diffir.data.prepare <dataset> --root <data dir> [--from-archive <file> ...]

Each run: (1) gets the official archives, downloaded resumably (HTTP Range into ``<file>.part``) and checked
against their checksum when one is published, or taken from ``--from-archive`` (zip or tar of any
compression, recognised by content, never downloading); (2) extracts only the files needed, straight to their
place; (3) runs the official preprocessing (BasicSR's ``extract_subimages.py``, Restormer's
``generate_patches_gopro.py``, LaMa's ``fetch_data`` scripts and ``gen_mask_dataset.py``); (4) writes
``<root>/<dataset dir>/prepare_manifest.json``. A second run reads the manifest and does nothing; an
interrupted run resumes (finished extractions and finished output files are kept). ``--help`` lists every
dataset's sources and licence; ``data/README.md`` the resulting layouts.

Modules: ``sources`` (archives and the routes of their members), ``fetch`` (download, checksum, extract),
``jobs`` (the process pool), ``builders`` (each dataset's preprocessing), ``registry`` (the datasets),
``run`` (one preparation and its manifest), ``cli`` (the command line).
"""

from diffir.errors import PrepareError

from .builders import evaluation_mask, patch_positions, subimage_positions
from .cli import main
from .fetch import download, extract, verify_checksum
from .registry import DATASETS, DatasetSpec
from .run import prepare

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "PrepareError",
    "download",
    "evaluation_mask",
    "extract",
    "main",
    "patch_positions",
    "prepare",
    "subimage_positions",
    "verify_checksum",
]
