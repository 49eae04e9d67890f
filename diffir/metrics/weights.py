"""Offline checks for pretrained weight files that libraries would otherwise try to download.

torchvision, lpips and torch-fidelity fetch backbone weights into the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``) on first use. On machines
without internet that fails deep inside the library with a network error, so metrics check the cache
first and raise :class:`MissingWeightsError` saying which file is missing, where it goes and how to get it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["MissingWeightsError", "hub_checkpoints_dir", "require_hub_checkpoint"]


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file is missing from the local cache (and cannot be downloaded here)."""


def hub_checkpoints_dir() -> Path:
    """The directory torchvision / ``torch.hub.load_state_dict_from_url`` read cached weights from."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def require_hub_checkpoint(
    filename: str,
    url: str,
    how_to: str,
    what: str,
    alternatives: Sequence[str] = (),
    directory: Path | None = None,
) -> Path:
    """Return the cached path of ``filename`` (or of the first present ``alternatives`` name).

    ``directory`` defaults to the torch hub cache; other libraries keep their own folders under
    ``$TORCH_HOME`` (LaMa: ``$TORCH_HOME/ade20k/...``). Raises a one-line :class:`MissingWeightsError` naming
    the file, the directory, the download URL and ``how_to`` (a command that fills the cache on a machine with
    internet) when none is present.
    """
    where = "the torch hub cache directory" if directory is None else "the directory"
    directory = hub_checkpoints_dir() if directory is None else Path(directory)
    for name in (filename, *alternatives):
        if (directory / name).is_file():
            return directory / name
    also = (
        f" (or the same weights saved as {', '.join(repr(a) for a in alternatives)})" if alternatives else ""
    )
    raise MissingWeightsError(
        f"{what} needs the pretrained weight file '{filename}'{also} in {where} {directory}, but it is not "
        f"there and nothing can be downloaded on this machine: on a machine with internet run `{how_to}` or "
        f"download {url}, then copy the file to {directory / filename} (TORCH_HOME moves the cache root)."
    )
