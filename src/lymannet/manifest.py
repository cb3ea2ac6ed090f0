"""Manifest of a finished demo: one digest per data file under results/, to check a run against.

`lymannet check-demo --write` records the manifest of a finished `./run demo`; `lymannet check-demo`
compares another finished demo (another machine, a later commit) with it and names the first
differing file in DAG order, so that a difference is traced to the stage that made it.

Which files: the data files, by suffix (FITS, CSV, TSV, NPY/NPZ, model files .pt, JSON, YAML,
Markdown).

What is compared: the data, not when, where or how fast it was made (:mod:`lymannet.digests`).

A manifest is text in `sha256sum`'s layout (``<digest>  <path>``, paths from the repository root),
in DAG order, after a first line ``# lymannet-demo-manifest 1 ...``. A file without that line is
read as a plain `sha256sum` manifest and checked on the files' bytes.
"""

from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


from .digests import file_digest

__all__ = [
    "DATA_SUFFIXES",
    "RULE_ORDER",
    "CheckResult",
    "check_manifest",
    "dag_key",
    "data_files",
    "file_digest",
    "read_manifest",
    "rule_of",
    "write_manifest",
]

HEADER = "# lymannet-demo-manifest 1"
HEADER_LINE = (
    f"{HEADER}: <digest>  <path> per data file in DAG order; digest = sha256 of the file, "
    "or of its content without volatile fields (lymannet.manifest); check with `lymannet check-demo`"
)
RESULTS_PREFIX = "results"
DATA_SUFFIXES = (".fits", ".fit", ".csv", ".tsv", ".npy", ".npz", ".pt", ".json", ".yaml", ".yml", ".md")

# Rules in DAG order (a rule comes after every rule whose outputs it reads). A file goes to the
# first rule of RULE_PATTERNS whose pattern matches its path below results/ ("*" spans folders);
# a file no pattern matches comes last.
RULE_ORDER = (
    "simulate",
    "fourmost_simulate",
    "ingest",
    "fourmost_ingest",
    "holdout",
    "testset",
    "resample_templates",
    "augment",
    "combine",
    "check_leakage",
    "tune",
    "train",
    "calibrate",
    "select_model",
    "fourmost_train",
    "learn_templates",
    "predict",
    "score",
    "compare",
    "fourmost_score",
    "fourmost_summary",
    "fourmost_study",
    "classify",
    "classify_merge",
    "vi_sample",
    "experiments",
)
RULE_PATTERNS = (
    ("simulated/*", "simulate"),
    ("fourmost/*/spectra/*", "fourmost_simulate"),
    ("fourmost/*/dlas.fits", "fourmost_simulate"),
    ("fourmost/*/list_templates.txt", "fourmost_simulate"),
    ("ingested/*", "ingest"),
    ("fourmost/*/ingested.fits", "fourmost_ingest"),
    ("pool/*", "holdout"),
    ("holdout/*", "holdout"),
    ("testsets/*", "testset"),
    ("resampled/*", "resample_templates"),
    ("variants/*", "augment"),
    ("combos/*", "combine"),
    ("checks/*", "check_leakage"),
    ("tune/*", "tune"),
    ("models/*/*/model.pt", "train"),
    ("models/*/*/history.csv", "train"),
    ("models/*/*/calibrat*", "calibrate"),
    ("models/selected*", "select_model"),
    ("fourmost/*/models/*", "fourmost_train"),
    ("baseline/*", "learn_templates"),
    ("predictions/*", "predict"),
    ("scores/*", "score"),
    ("summary.*", "compare"),
    ("fourmost/*/redshift/*", "fourmost_score"),
    ("fourmost/*/dla_presence/*", "fourmost_score"),
    ("fourmost/*/dla_location/*", "fourmost_score"),
    ("fourmost/*/summary.*", "fourmost_summary"),
    ("fourmost/*/studies/*", "fourmost_study"),
    ("classify/*/vi_sample/*", "vi_sample"),
    ("classify/*/catalogue.fits", "classify_merge"),
    ("classify/*/failures.tsv", "classify_merge"),
    ("classify/*/summary.*", "classify_merge"),
    ("classify/*", "classify"),  # batches/*.tsv and the per-coadd catalogues
    ("experiments/*", "experiments"),
)
# ----------------------------------------------------------------------------------------------
# Which files, in which order


def rule_of(relative: str) -> str | None:
    """The rule that writes `relative` (a path below results/, '/'-separated), or None."""
    for pattern, rule in RULE_PATTERNS:
        if fnmatch.fnmatchcase(relative, pattern):
            return rule
    return None


def dag_key(relative: str) -> tuple[int, str]:
    """Sort key: DAG order of the writing rule, then the path."""
    rule = rule_of(relative)
    return (RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER), relative)


def is_data_file(path: Path) -> bool:
    return path.suffix.lower() in DATA_SUFFIXES and not path.name.startswith(".")


def _skipped(relative: str) -> bool:
    """Resume points of training jobs (left only by a cut run), not results."""
    return "checkpoints" in relative.split("/")[:-1]


def data_files(results: Path) -> list[str]:
    """Data files below `results`, as paths relative to it, in DAG order."""
    results = Path(results)
    found = [p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file() and is_data_file(p)]
    return sorted((name for name in found if not _skipped(name)), key=dag_key)


# ----------------------------------------------------------------------------------------------
# Writing and checking


def write_manifest(results: str | Path, manifest: str | Path) -> int:
    """Write the manifest of the finished demo in `results`; return the number of files."""
    results, manifest = Path(results), Path(manifest)
    names = data_files(results)
    lines = [HEADER_LINE]
    lines += [f"{file_digest(results / name)}  {RESULTS_PREFIX}/{name}" for name in names]
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(lines) + "\n")
    return len(names)


def read_manifest(manifest: str | Path) -> tuple[bool, dict[str, str]]:
    """(content digests?, {path below results/: digest}). Plain `sha256sum` files give bytes digests."""
    text = Path(manifest).read_text()
    content = text.startswith(HEADER)
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            digest, sep, name = line.partition(" *")  # sha256sum's binary-mode marker
        if not sep or len(digest) != 64:
            raise ValueError(f"{manifest}:{number}: not '<sha256>  <path>': {line!r}")
        name = name.strip()
        prefix = RESULTS_PREFIX + "/"
        entries[name[len(prefix) :] if name.startswith(prefix) else name] = digest.lower()
    return content, entries


@dataclass
class CheckResult:
    checked: int = 0
    differing: list[str] = field(default_factory=list)  # paths below results/, DAG order
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # data files the manifest does not list
    content: bool = True

    @property
    def ok(self) -> bool:
        return not self.differing and not self.missing

    def first(self) -> str | None:
        """The first differing or missing file in DAG order."""
        bad = sorted(self.differing + self.missing, key=dag_key)
        return bad[0] if bad else None


def check_manifest(
    results: str | Path, manifest: str | Path, names: Iterable[str] | None = None
) -> CheckResult:
    """Compare the data files in `results` with `manifest` (see the module's docstring)."""
    results = Path(results)
    content, expected = read_manifest(manifest)
    result = CheckResult(content=content)
    for name in sorted(expected if names is None else names, key=dag_key):
        path = results / name
        if not path.is_file():
            result.missing.append(name)
            continue
        result.checked += 1
        if file_digest(path, content=content) != expected[name]:
            result.differing.append(name)
    result.extra = [name for name in data_files(results) if name not in expected]
    return result
