"""Getting the archives: resumable downloads, checksums, and extraction of the routed members (zip or tar of
any compression, recognised by content)."""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from tqdm import tqdm

from diffir.errors import PrepareError
from diffir.io import write_atomic

from .sources import Archive


def verify_checksum(path: Path, checksum: str) -> None:
    """Raise PrepareError unless ``path`` has ``checksum`` (``"sha256:<hex>"`` or ``"md5:<hex>"``)."""
    algorithm, expected = checksum.split(":", 1)
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f, _bar(os.path.getsize(path), f"checking {path.name}", "B") as bar:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
            bar.update(len(chunk))
    if digest.hexdigest() != expected:
        raise PrepareError(
            f"{path}: {algorithm} is {digest.hexdigest()}, expected {expected} (corrupt download)"
        )


def download(url: str, path: Path, checksum: str | None = None) -> Path:
    """Download ``url`` to ``path``, resuming ``<path>.part`` of an earlier attempt (HTTP Range), then check it.

    A corrupt file is renamed to ``<path>.corrupt`` so that the next attempt starts afresh.
    """
    part = path.with_name(path.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "diffir-prepare"} | ({"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as err:
        if not (err.code == 416 and done):  # 416: nothing left to fetch, the .part is complete
            raise PrepareError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
        response = None
    except (urllib.error.URLError, OSError) as err:
        raise PrepareError(f"cannot download {url}: {err}") from err
    if response is not None:
        with response:
            if "text/html" in response.headers.get("Content-Type", ""):
                raise PrepareError(
                    f"{url} answered with a web page, not the archive (moved, or needs a login)"
                )
            if done and response.status != 206:  # the server ignored the range: start again
                done = 0
            length = int(response.headers.get("Content-Length") or 0)
            with open(part, "ab" if done else "wb") as f, _bar(length + done or None, path.name, "B") as bar:
                bar.update(done)
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    if checksum:
        try:
            verify_checksum(part, checksum)
        except PrepareError:
            part.replace(path.with_name(path.name + ".corrupt"))
            raise
    part.replace(path)
    return path


def _members(archive: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """``(member path, opener)`` of each file of a zip or tar archive (detected by content), in one pass."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info: zf.open(info)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, mode="r|*") as tf:  # streaming: one sequential read, even of 100 GB
            for member in tf:
                if member.isfile():
                    yield member.name, lambda member=member: tf.extractfile(member)
    else:
        raise PrepareError(f"{archive} is neither a zip nor a tar archive")


def extract(archive: Path, sources: Sequence[Archive], root: Path) -> dict[str, int]:
    """Write the members of ``archive`` routed by ``sources`` under ``root``; returns files per source."""
    counts = dict.fromkeys((s.filename for s in sources), 0)
    with _bar(None, f"extracting {archive.name}", " files") as bar:
        for name, open_member in _members(archive):
            member = re.sub(r"^(\./|/)+", "", name.replace("\\", "/"))
            for source in sources:
                dest = source.route(member)
                if dest is not None and ".." not in Path(dest).parts:
                    with open_member() as stream:
                        write_atomic(root / dest, stream, durable=False)
                    counts[source.filename] += 1
                    bar.update()
                    break
    return counts


def _bar(total: int | None, desc: str, unit: str) -> tqdm:
    """A progress bar on stderr (hidden when it is not a terminal)."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", disable=None, leave=False)
