"""Digests of a demo's data files without what records when, where or how fast they were made:
what :mod:`lymannet.manifest` records and checks.

What is compared: the data, not when, where or how fast it was made. Outputs also record that;
two runs of one commit on one machine differ in these fields only (measured on the small DAG,
config/small.yaml: 436 data files, 50 with other bytes, none with other content): provenance
records (creation time, the command with Snakemake's temporary script path, sha256 of the inputs,
which hold provenance themselves), training and search timings (`seconds`, `train_seconds`,
Optuna's `datetime_*`, `duration`, and each trial's heartbeat, host, pid), peak memory, and
digests of model or training files, which hold such timings (MODELSHA, CFGHASH, `model_sha256`, the
DLA catalogue's LOCHASH, LBALHASH, PREHASH, a refined catalogue's TEMPLSHA).
The git revision (GITREV, `git_revision`) and the package versions of the provenance change with
every commit or environment, and a survey catalogue's SRCROOT (the absolute folder of its coadds)
with every clone: they are left out too. A digest covers a file without those fields
(:data:`VOLATILE_FIELDS`, :data:`VOLATILE_FITS_CARDS`):

* FITS: every HDU but ``PROVENANCE``, header cards and data, less the cards in
  :data:`VOLATILE_FITS_CARDS`;
* CSV, TSV and Markdown tables: the rows without volatile columns (by header name); in Markdown,
  hex digests of 12 or more characters (a model's sha256, a git revision) are masked;
* JSON and YAML: the parsed content without volatile keys (at any depth);
* model files (.pt): the saved payload (weights as dtype, shape and bytes) without volatile keys;
* NPZ: each member's name and bytes (not the zip's timestamps); a member holding one JSON string
  (a 'meta' record) without volatile keys;
* everything else, and every file that holds no volatile field: the sha256 of the file's bytes,
  as `sha256sum` gives it.

Left out entirely: figures, logs, markers, the HTML report, and training checkpoints (resume
points a cut run leaves).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# Keys (JSON, YAML, model payloads) and table columns (CSV, TSV, Markdown) that record when, where
# or how fast a file was made, or hash a file that does: left out of the digest. Lower case.
VOLATILE_FIELDS = frozenset(
    {
        "provenance",
        "created_utc",
        "command",
        "git_revision",
        "seconds",
        "train_seconds",
        "spectra_per_s",
        "peak_rss_mb",
        "peak_gpu_mb",
        "datetime_start",
        "datetime_complete",
        "duration",
        "user_attrs_heartbeat",
        "user_attrs_host",
        "user_attrs_pid",
        "sha256",
        "model_sha256",
    }
)
# FITS header cards of the same kind (the PROVENANCE HDU is left out whole).
# CFGHASH: a config hash that may cover input-file hashes (the learned templates' training file).
# SRCROOT: the absolute folder a survey catalogue's coadds were read from (where the run was made).
# LOCHASH, LBALHASH, PREHASH: the DLA catalogue's model-file digests (as MODELSHA); TEMPLSHA: a refined
# catalogue's learned-templates file digest (its zip and meta record hold timestamps).
VOLATILE_FITS_CARDS = frozenset(
    {
        "GITREV",
        "MODELSHA",
        "LOCHASH",
        "LBALHASH",
        "PREHASH",
        "TEMPLSHA",
        "SRCMTIME",
        "SRCROOT",
        "CFGHASH",
        "DATE",
    }
    | {"CHECKSUM", "DATASUM"}
)
PROVENANCE_EXTNAME = "PROVENANCE"

BLOCK = 2880
CARD = 80
CHUNK = 1 << 20


def is_volatile(name: str) -> bool:
    return str(name).strip().lower() in VOLATILE_FIELDS


# ----------------------------------------------------------------------------------------------
# Digests


def bytes_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_digest(path: str | Path, content: bool = True) -> str:
    """sha256 of the file's content without volatile fields (`content`), or of its bytes."""
    path = Path(path)
    if not content:
        return bytes_digest(path)
    suffix = path.suffix.lower()
    if suffix in (".fits", ".fit"):
        return _fits_digest(path)
    if suffix in (".csv", ".tsv"):
        return _table_digest(path, "\t" if suffix == ".tsv" else ",")
    if suffix == ".md":
        return _markdown_digest(path)
    if suffix == ".json":
        return _tree_digest(path, json.loads(path.read_text()))
    if suffix in (".yaml", ".yml"):
        import yaml

        return _tree_digest(path, yaml.safe_load(path.read_text()))
    if suffix == ".pt":
        return _model_digest(path)
    if suffix == ".npz":
        return _npz_digest(path)
    return bytes_digest(path)


def _fits_digest(path: Path) -> str:
    """HDU by HDU, from the file's blocks: header cards (less volatile ones) and data bytes; the
    PROVENANCE HDU left out. A file with neither gives its plain sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            header = _read_fits_header(handle)
            if header is None:
                break
            if not header.startswith((b"SIMPLE  ", b"XTENSION")):  # bytes after the last HDU, as they are
                digest.update(header)
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                break
            cards = [header[i : i + CARD] for i in range(0, len(header), CARD)]
            values = _fits_values(cards)
            size = _fits_data_bytes(values)
            if values.get("EXTNAME", "").strip() == PROVENANCE_EXTNAME:
                handle.seek(size, 1)
                continue
            kept = _kept_cards(cards)
            if kept is None:  # nothing volatile: the header's bytes as they are
                digest.update(header)
            else:
                digest.update(b"".join(kept) + b"END-OF-HEADER")
            while size > 0:
                chunk = handle.read(min(size, CHUNK))
                if not chunk:
                    break
                digest.update(chunk)
                size -= len(chunk)
    return digest.hexdigest()


def _kept_cards(cards: list[bytes]) -> list[bytes] | None:
    """A header's cards without the volatile ones (and their CONTINUE cards: a long string such as
    an absolute path spans several) and without blank padding, whose amount follows the header's
    length; None when the header holds no volatile card."""
    kept, dropping, dropped = [], False, False
    for card in cards:
        key = card[:8].decode("ascii", "replace").strip()
        if key == "CONTINUE" and dropping:
            continue
        dropping = key in VOLATILE_FITS_CARDS
        dropped |= dropping
        if not dropping and card.strip():
            kept.append(card)
    return kept if dropped else None


def _read_fits_header(handle: Any) -> bytes | None:
    """The next header's blocks up to its END card; None at the end of the file. What does not
    start a header (padding after the last HDU) comes back as one block."""
    blocks = []
    while True:
        block = handle.read(BLOCK)
        if not blocks and (len(block) < BLOCK or not block.startswith((b"SIMPLE  ", b"XTENSION"))):
            return block or None
        if len(block) < BLOCK:
            raise ValueError(f"{handle.name}: truncated FITS header")
        blocks.append(block)
        if any(block[i : i + 8] == b"END     " for i in range(0, BLOCK, CARD)):
            return b"".join(blocks)


def _fits_values(cards: list[bytes]) -> dict[str, str]:
    values = {}
    for card in cards:
        key = card[:8].decode("ascii", "replace").strip()
        if card[8:10] == b"= ":
            value = card[10:].decode("ascii", "replace").strip()
            if value.startswith("'"):  # a string: up to its closing quote ('' is a quote inside)
                value = re.match(r"'((?:[^']|'')*)'?", value).group(1).replace("''", "'").rstrip()
            else:
                value = value.split("/")[0].strip()
            values.setdefault(key, value)
    return values


def _fits_data_bytes(values: dict[str, str]) -> int:
    naxis = int(values.get("NAXIS", "0"))
    if naxis == 0:
        return 0
    elements = math.prod(int(values[f"NAXIS{i}"]) for i in range(1, naxis + 1))
    groups, heap = int(values.get("GCOUNT", "1")), int(values.get("PCOUNT", "0"))
    size = abs(int(values["BITPIX"])) // 8 * groups * (heap + elements)
    return -(-size // BLOCK) * BLOCK


def _table_digest(path: Path, delimiter: str) -> str:
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if not lines:
        return bytes_digest(path)
    header = next(csv.reader([lines[0]], delimiter=delimiter))
    keep = [i for i, name in enumerate(header) if not is_volatile(name)]
    if len(keep) == len(header):
        return bytes_digest(path)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    for row in csv.reader(io.StringIO(text), delimiter=delimiter):
        writer.writerow([row[i] for i in keep if i < len(row)])
    return hashlib.sha256(out.getvalue().encode()).hexdigest()


_MD_SPLIT = re.compile(r"(?<!\\)\|")
_HEX = re.compile(r"\b[0-9a-f]{12,64}\b")  # a sha256 or git revision, whole or abbreviated


def _markdown_digest(path: Path) -> str:
    """Markdown tables lose their volatile columns (by header cell), and hex digests of 12 or more
    characters in the text (model sha256, git revision) are masked; the rest stays."""
    lines = path.read_text().splitlines(keepends=True)
    out, drop, changed = [], None, False
    for line in lines:
        masked = _HEX.sub("<hex>", line)
        changed |= masked != line
        line = masked
        is_row = line.lstrip().startswith("|")
        if not is_row:
            drop = None
        elif drop is None:  # a table's header row
            cells = _MD_SPLIT.split(line.rstrip("\n"))
            drop = {j for j, cell in enumerate(cells) if cell.strip() and is_volatile(cell)}
        if is_row and drop:
            cells = _MD_SPLIT.split(line.rstrip("\n"))
            line = "|".join(cell for j, cell in enumerate(cells) if j not in drop) + "\n"
            changed = True
        out.append(line)
    if not changed:
        return bytes_digest(path)
    return hashlib.sha256("".join(out).encode()).hexdigest()


def _strip(tree: Any) -> tuple[Any, bool]:
    """`tree` without volatile keys at any depth, and whether any was found."""
    if isinstance(tree, dict):
        kept, found = {}, False
        for key, value in tree.items():
            if is_volatile(key):
                found = True
                continue
            kept[key], inner = _strip(value)
            found |= inner
        return kept, found
    if isinstance(tree, (list, tuple)):
        items = [_strip(value) for value in tree]
        return type(tree)(item for item, _ in items), any(inner for _, inner in items)
    return tree, False


def _tree_digest(path: Path, tree: Any) -> str:
    stripped, found = _strip(tree)
    if not found:
        return bytes_digest(path)
    digest = hashlib.sha256()
    _feed(digest, stripped)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    """A canonical byte stream of a nested value: type tags, sorted keys, exact numbers and bytes."""
    if isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif isinstance(value, np.ndarray):
        digest.update(f"A{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif _is_tensor(value):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(_torch().uint8).numpy().tobytes())
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def _torch() -> Any:
    import torch

    return torch


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _model_digest(path: Path) -> str:
    """A torch.save'd payload: its tree without volatile keys (weights as dtype, shape and bytes).
    Loaded as data only (weights_only) where it can be, as the pipeline loads its own models."""
    torch = _torch()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # a payload with other objects (this run's own file)
        payload = torch.load(path, map_location="cpu", weights_only=False)
    digest = hashlib.sha256()
    _feed(digest, _strip(payload)[0])
    return digest.hexdigest()


def _npz_digest(path: Path) -> str:
    """Member by member (names and .npy bytes); a member that holds one JSON string (a 'meta'
    record) counts as its content without volatile keys."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for info in sorted(archive.infolist(), key=lambda item: item.filename):
            data = archive.read(info)
            digest.update(info.filename.encode() + b"\0")
            tree = _json_member(data)
            if tree is None:
                digest.update(hashlib.sha256(data).digest())
            else:
                member = hashlib.sha256()
                _feed(member, _strip(tree)[0])
                digest.update(member.digest())
    return digest.hexdigest()


def _json_member(data: bytes) -> Any:
    """The JSON value of an .npy member that is one string, else None."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError:
        return None
    if array.shape != () or array.dtype.kind not in "US":
        return None
    text = array.item().decode() if array.dtype.kind == "S" else array.item()
    try:
        return json.loads(text)
    except ValueError:
        return None
