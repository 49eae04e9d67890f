"""One preparation: options checked, archives obtained (given or downloaded) and extracted, the dataset's
preprocessing run, and a manifest written so that a second run does nothing."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diffir.errors import PrepareError
from diffir.io import list_images, write_atomic

from .fetch import download, extract
from .registry import DATASETS, DatasetSpec

MANIFEST = "prepare_manifest.json"
MANIFEST_FORMAT = 1


def _count(path: Path) -> int:
    return len(list_images(path)) if path.is_dir() else 0


def _obtain(spec: DatasetSpec, root: Path, given: Sequence[Path], delete_archives: bool) -> None:
    """Extract every archive of ``spec`` not extracted yet: from ``given`` files, or else downloaded."""
    pending = [a for a in spec.archives if not a.marker(root).exists()]
    if not pending:
        print("  archives: already extracted")
        return
    counts: dict[str, int] = dict.fromkeys((a.filename for a in pending), 0)
    origin: dict[str, list[str]] = {a.filename: [] for a in pending}
    if given:
        for path in given:
            if not path.is_file():
                raise PrepareError(f"--from-archive {path}: no such file")
            for name, n in extract(path, pending, root).items():
                counts[name] += n
                if n:
                    origin[name].append(str(path))
        missing = [a for a in pending if counts[a.filename] == 0]
        if missing:
            raise PrepareError(
                "the given archives hold none of the files of:\n  "
                + "\n  ".join(f"{a.filename}: {a.url or 'download by hand from ' + a.page}" for a in missing)
            )
    else:
        manual = [a for a in pending if a.url is None]
        if manual:
            raise PrepareError(
                "download by hand (no direct link), then pass the file(s) with --from-archive:\n  "
                + "\n  ".join(f"{a.filename}: {a.page}" for a in manual)
            )
        for archive in pending:
            path = root / "downloads" / archive.filename
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                print(f"  downloading {archive.url}")
                download(archive.url, path, archive.checksum)
            counts.update(extract(path, [archive], root))
            origin[archive.filename].append(str(path))
            if delete_archives:
                path.unlink()
    for archive in pending:
        n = counts[archive.filename]
        subset = f" (the full archive has {archive.expected})" if archive.expected not in (None, n) else ""
        sources = ", ".join(origin[archive.filename])
        print(f"  extracted {n} files of {archive.filename} from {sources}{subset}")
        marker = archive.marker(root)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"files": n, "from": origin[archive.filename]}))


def prepare(
    dataset: str,
    root: str | Path,
    archives: Sequence[str | Path] = (),
    *,
    options: Mapping[str, int | None] | None = None,
    workers: int = 1,
    force: bool = False,
    delete_archives: bool = False,
) -> dict[str, Any]:
    """Prepare ``dataset`` under ``root`` (see the module docstring); returns the manifest plus ``status``.

    ``archives``: files downloaded by hand (nothing is downloaded then). ``options``: the dataset's settable
    options (``seed``, subset sizes); None values keep the defaults.
    """
    if dataset not in DATASETS:
        raise PrepareError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[dataset]
    chosen = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(chosen) - set(spec.options))
    if unknown:
        raise PrepareError(
            f"{dataset} has no option {', '.join(unknown)} (it has: {', '.join(spec.options) or 'none'})"
        )
    settings = {**spec.options, **chosen}
    root = Path(root).expanduser().resolve()
    manifest_path = root / spec.directory / MANIFEST
    print(f"{dataset}: {spec.title} -> {root / spec.directory}")
    if force:
        for product in spec.products:
            target = root / product
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        for archive in spec.archives:
            archive.marker(root).unlink(missing_ok=True)
        manifest_path.unlink(missing_ok=True)
    elif manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("options") != settings:
            raise PrepareError(
                f"{root / spec.directory} was prepared with {old.get('options')}, not {settings}; "
                "run with --force to prepare it again"
            )
        changed = [
            f"{d} ({n} -> {_count(root / d)} files)"
            for d, n in old["outputs"].items()
            if _count(root / d) != n
        ]
        if not changed:
            print(f"  nothing to do: already prepared ({manifest_path}, {old['finished']})")
            _print_outputs(old["outputs"], root)
            return {**old, "status": "up to date"}
        print("  outputs changed since the last run, preparing again: " + ", ".join(changed))
    start = time.time()
    _obtain(spec, root, [Path(a).expanduser() for a in archives], delete_archives)
    spec.build(root, settings, workers)
    manifest = {
        "dataset": dataset,
        "format": MANIFEST_FORMAT,
        "options": settings,
        "archives": [a.filename for a in spec.archives],
        "outputs": {d: _count(root / d) for d in spec.outputs},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_atomic(manifest_path, json.dumps(manifest, indent=2).encode())
    print(f"  prepared in {time.time() - start:.1f} s; manifest: {manifest_path}")
    _print_outputs(manifest["outputs"], root)
    return {**manifest, "status": "prepared"}


def _print_outputs(outputs: Mapping[str, int], root: Path) -> None:
    for folder, n in outputs.items():
        print(f"  {n:>9,d} images  {root / folder}")
