"""Atomic file writing, content hashes and provenance shared by every stage.

Every output goes to a temporary file beside its final path and is renamed into place only once
complete, so a crash, a scancel or a bad input never leaves a half-written file that Snakemake or
a person could mistake for a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np

PROVENANCE_PACKAGES = ("lymannet", "numpy", "torch", "astropy", "fitsio", "pandas", "snakemake")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers such as fitsio refuse to open an existing file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def config_hash(config_slice: Any) -> str:
    """Short stable hash of a JSON-able config slice (key order does not matter)."""
    text = json.dumps(config_slice, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_revision(start: str | Path | None = None) -> str:
    """`git describe` of the working tree the code runs from ('unknown' outside a checkout)."""
    where = Path(start) if start else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance(config_slice: Any = None, inputs: dict[str, str | Path] | None = None) -> dict[str, Any]:
    """What made a file: config slice and its hash, package versions, git revision, input hashes."""
    record: dict[str, Any] = {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "versions": package_versions(),
        "command": " ".join(sys.argv[:3]),
    }
    if config_slice is not None:
        record["config"] = config_slice
        record["config_hash"] = config_hash(config_slice)
    if inputs:
        record["inputs"] = {key: {"path": str(p), "sha256": file_sha256(p)} for key, p in inputs.items()}
    return record


def native_column(values: np.ndarray) -> np.ndarray:
    """FITS columns come big-endian or as bytes: native numbers and str for pandas."""
    if values.dtype.kind == "S":
        return np.char.decode(values, "ascii")
    if values.dtype.byteorder not in ("=", "|"):
        return values.astype(values.dtype.newbyteorder("="))
    return values


def first_line(error: Exception) -> str:
    """The first line of an error's message (cfitsio's run to many), for a one-line InputFileError."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
