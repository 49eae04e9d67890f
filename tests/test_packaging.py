"""What a clone and a wheel carry: the wheel holds the Hydra configs and the console scripts, and every
``docs/<name>.md §n`` that the code, configs, tests and README cite is a section of a file in the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

import diffir
from diffir.checkpoint import atomic_save, model_record
from diffir.model_config import model_config


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    leftovers = [p for p in (REPO / "build", REPO / "diffir.egg-info") if not p.exists()]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    for folder in leftovers:  # setuptools builds in the checkout: leave it as it was
        shutil.rmtree(folder, ignore_errors=True)
    (path,) = out.glob("diffir-*.whl")
    return path


@pytest.mark.slow
def test_wheel_composes_configs_outside_the_repository(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)  # a pure-Python wheel installs by unpacking
    assert (site / "diffir" / "conf" / "train.yaml").is_file()
    script = (
        "import diffir, diffir.config as c; "
        "cfg = c.compose_config(['task=deblur', 'stage=2']); "
        "print(diffir.__file__); print(cfg.task, cfg.run.max_steps)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    module_file, values = result.stdout.strip().splitlines()[-2:]
    assert Path(module_file).is_relative_to(site), "the installed package, not the checkout, was imported"
    assert values.split()[0] == "deblur"


@pytest.mark.slow
def test_wheel_declares_console_scripts(wheel):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        entry_points = archive.read(name).decode()
    for script in ("diffir-train", "diffir-eval", "diffir-infer"):
        assert f"{script} = diffir.runs.cli:" in entry_points


# --- documentation citations -------------------------------------------------------------------------------

SECTION = r"\d+(?:\.\d+)*"
SPAN = rf"§\s*{SECTION}(?:\s*[-–]\s*{SECTION})?"  # §3.2 or a range §3.2-3.4
# docs/method.md §3.3, docs/method.md §3.2-3.4, docs/method.md §3.3-3.4, §4.2: every listed item starts with §
CITATION = re.compile(rf"docs/(?P<doc>[\w-]+\.md)\s*(?P<spans>{SPAN}(?:\s*,\s*{SPAN})*)")
HEADING = re.compile(rf"^#{{1,6}}\s+(?P<number>{SECTION})\.?(?:\s|$)")
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".txt", ".cfg", ".toml", ".json"}
# The former homes of these sections, outside the clone (spelled in two parts so this file does not cite them)
OUTSIDE_DOCS = ("diffir" + "-reference.md", "baselines" + "-reference.md")


def _sources(*roots: Path) -> list[Path]:
    """Text files under ``roots`` (a directory is walked, symlinked ones too: ``diffir/conf`` links to
    ``conf/``), each once."""
    found: dict[Path, Path] = {}
    for root in roots:
        paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in paths:
            if path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts:
                found.setdefault(path.resolve(), path)
    return sorted(found.values())


def _cited_sections(spans: str) -> list[str]:
    """The section numbers a citation names; a range between siblings (§3.2-3.4, §2-4) names every one."""
    sections = []
    for span in re.findall(SPAN, spans):
        ends = [e.strip() for e in re.split(r"[-–]", span.lstrip("§").strip())]
        if len(ends) == 1:
            sections.append(ends[0])
            continue
        first, last = (e.split(".") for e in ends)
        if len(first) == len(last) and first[:-1] == last[:-1] and int(first[-1]) <= int(last[-1]):
            prefix = first[:-1]
            sections += [".".join([*prefix, str(k)]) for k in range(int(first[-1]), int(last[-1]) + 1)]
        else:
            sections += [".".join(first), ".".join(last)]
    return sections


def _citations(paths: list[Path]) -> list[tuple[str, str, str]]:
    """(where, document, section) for every ``docs/<name>.md §n`` in ``paths``."""
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in CITATION.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{path.relative_to(REPO)}:{line}"
            found += [(where, match["doc"], section) for section in _cited_sections(match["spans"])]
    return found


def _headings(document: Path) -> set[str]:
    return {
        m["number"]
        for line in document.read_text(encoding="utf-8").splitlines()
        if (m := HEADING.match(line))
    }


def test_citation_parser_reads_ranges_and_lists():
    text = "(docs/method.md §3.3-3.4, §4.2) docs/baselines.md §2-4; docs/method.md §1.2-1.3 and §5: 8 GPUs, 3"
    spans = [(m["doc"], _cited_sections(m["spans"])) for m in CITATION.finditer(text)]
    assert spans == [
        ("method.md", ["3.3", "3.4", "4.2"]),
        ("baselines.md", ["2", "3", "4"]),
        ("method.md", ["1.2", "1.3"]),
    ]
    assert _headings(REPO / "docs" / "method.md") >= {"1", "1.2", "2", "2.1", "3", "3.2", "6"}


def test_every_docs_citation_names_a_section_of_a_file_in_the_repository():
    sources = _sources(
        REPO / "diffir",
        REPO / "diffir" / "conf",
        REPO / "tests",
        REPO / "bench",
        REPO / "docs",
        REPO / "README.md",
        *REPO.glob("*.py"),
    )
    citations = _citations(sources)
    documents = {doc for _, doc, _ in citations}
    assert {"method.md", "baselines.md"} <= documents and len(citations) >= 30, (
        f"only {len(citations)} citations found in {len(sources)} files: is the pattern still right?"
    )
    headings = {doc: _headings(REPO / "docs" / doc) for doc in documents if (REPO / "docs" / doc).is_file()}
    missing = [f"{where}: docs/{doc} does not exist" for where, doc, _ in citations if doc not in headings]
    missing += [
        f"{where}: docs/{doc} has no heading for §{section}"
        for where, doc, section in citations
        if doc in headings and section not in headings[doc]
    ]
    assert not missing, "citations that do not resolve in the repository:\n" + "\n".join(sorted(set(missing)))


def test_no_code_cites_the_documents_outside_the_clone():
    sources = _sources(
        REPO / "diffir", REPO / "diffir" / "conf", REPO / "tests", REPO / "bench", *REPO.glob("*.py")
    )
    stale = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if any(name in line for name in OUTSIDE_DOCS)
    ]
    assert not stale, "cite docs/method.md or docs/baselines.md instead:\n" + "\n".join(stale)


def test_loading_and_restoring_import_neither_hydra_nor_lightning(tmp_path):
    """The front door is light and has no side effects on import: a new interpreter loads a model file and
    restores an image without importing Hydra, Lightning or torchvision (training and evaluation need them)."""
    sr4 = diffir.build_model("sr", 2, 4, **diffir.model_preset("sr", "tiny"))
    path = tmp_path / "sr4.pt"
    atomic_save(
        model_record(model_config("sr", 2, 4, diffir.model_preset("sr", "tiny")), sr4.state_dict()), path
    )
    code = (
        "import sys, warnings, torch\n"
        "filters = list(warnings.filters)\n"
        "import diffir\n"
        f"model = diffir.load({str(path)!r})\n"
        "assert diffir.restore(model, torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)\n"
        "print(sorted(m for m in ('hydra', 'lightning', 'torchvision', 'omegaconf') if m in sys.modules))\n"
        "print(warnings.filters == filters)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported, filters_unchanged = proc.stdout.splitlines()
    assert imported == "['omegaconf']", f"loading a model imported {imported}"  # the presets are YAML
    assert filters_unchanged == "True", "importing or loading changed the warning filters"


def test_dotted_paths_in_earlier_run_configs_still_resolve():
    """A run folder's ``config.yaml`` names the classes it instantiated by dotted path (checkpoints name none:
    they hold tensors and the model record). The re-layout of issue 18 kept every such path valid, so no mapping
    is needed: the Real-ESRGAN package exports its pipeline, ``losses/adversary.py`` kept its name (the GAN
    primitives moved from ``losses/adversarial.py`` to ``losses/gan.py`` but configs name them via
    ``diffir.losses``)."""
    from hydra.utils import get_class

    from diffir.data.realesrgan.pipeline import RealESRGANDegradation
    from diffir.losses.adversary import BCEAdversary, LamaAdversary
    from diffir.losses.gan import GANLoss, NonSaturatingWithR1

    stored = {
        "diffir.data.realesrgan.RealESRGANDegradation": RealESRGANDegradation,
        "diffir.losses.adversary.BCEAdversary": BCEAdversary,
        "diffir.losses.adversary.LamaAdversary": LamaAdversary,
        "diffir.losses.GANLoss": GANLoss,
        "diffir.losses.NonSaturatingWithR1": NonSaturatingWithR1,
    }
    for path, cls in stored.items():
        assert get_class(path) is cls, path
