"""Demo manifests (`lymannet check-demo`, lymannet.manifest) on a small synthetic results tree."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits

from lymannet.cli import main
from lymannet.manifest import (
    HEADER,
    check_manifest,
    data_files,
    file_digest,
    read_manifest,
    rule_of,
    write_manifest,
)


def write_fits(
    path: Path,
    flux: np.ndarray,
    created: str = "2026-12-06T04:46:35+00:00",
    gitrev: str = "8f22584b7d0d",
    srcroot: str = "/tmp/clone-a/results/simulated/survey",
) -> None:
    """A lymannet-style FITS file: data HDUs, header cards with the git revision and the folder the
    inputs were read from (a survey catalogue's SRCROOT), PROVENANCE (JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"created_utc": created, "command": f"/tmp/{created}.py", "config": {"seed": 1}})
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="JSON", format=f"{len(record)}A", array=[record])], name="PROVENANCE"
    )
    flux_hdu = fits.ImageHDU(flux.astype(np.float32), name="FLUX")
    flux_hdu.header["GITREV"] = gitrev
    flux_hdu.header["SRCROOT"] = srcroot
    fits.HDUList([fits.PrimaryHDU(), flux_hdu, table]).writeto(path)


def write_model(path: Path, weights: torch.Tensor, seconds: float = 1.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": {"conv.weight": weights},
            "spec": {"layers": 4},
            "provenance": {"created_utc": str(seconds)},
            "training": {"best_epoch": 3, "train_seconds": seconds, "peak_rss_mb": 700.0 + seconds},
        },
        path,
    )


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """One file of each kind, written by rules from the start to the end of the DAG."""
    root = tmp_path / "results"
    flux = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_fits(root / "simulated" / "survey" / "coadd.fits", flux)
    write_fits(root / "testsets" / "test_z3.fits", flux + 1)
    write_fits(root / "combos" / "initial" / "train.fits", flux + 2)
    write_model(root / "models" / "initial" / "initial" / "model.pt", torch.ones(2, 3))
    (root / "models" / "initial" / "initial" / "history.csv").write_text(
        "epoch,val_loss,seconds\n1,0.5,14.2\n2,0.25,13.9\n"
    )
    (root / "scores" / "initial" / "initial").mkdir(parents=True)
    (root / "scores" / "initial" / "initial" / "test_z3.json").write_text(
        json.dumps({"score": 0.937, "model_sha256": "ab" * 32}, indent=2)
    )
    (root / "summary.md").write_text(
        "# Scores\n\n| model | score | train_seconds |\n|---|---|---|\n| initial | 0.937 | 81.0 |\n"
    )
    (root / "tune" / "demo").mkdir(parents=True)
    (root / "tune" / "demo" / "best_model.yaml").write_text("conv:\n  layers: 3\n")
    (root / "tune" / "demo" / "journal.log").write_text("not data\n")
    (root / "plots").mkdir()
    (root / "plots" / "compare_test_z3.png").write_bytes(b"\x89PNG")
    return root


def run_cli(*args: str) -> int:
    return main(["check-demo", *args])


def test_data_files_in_dag_order(results: Path):
    assert data_files(results) == [
        "simulated/survey/coadd.fits",
        "testsets/test_z3.fits",
        "combos/initial/train.fits",
        "tune/demo/best_model.yaml",
        "models/initial/initial/history.csv",
        "models/initial/initial/model.pt",
        "scores/initial/initial/test_z3.json",
        "summary.md",
    ]  # no figures, no logs
    assert rule_of("classify/demo_survey/batches/b0123456789.tsv") == "classify"
    assert rule_of("classify/demo_survey/catalogue.fits") == "classify_merge"
    assert rule_of("fourmost/demo/spectra/PAQS_absorber_000001.fits") == "fourmost_simulate"
    assert rule_of("somewhere/new.csv") is None


def test_write_then_check_passes(results: Path, tmp_path: Path, capsys):
    manifest = tmp_path / "demo-manifest.sha256"
    assert run_cli("--results", str(results), "--manifest", str(manifest), "--write") == 0
    lines = manifest.read_text().splitlines()
    assert lines[0].startswith(HEADER)
    assert [line.split("  ")[1] for line in lines[1:]] == [f"results/{name}" for name in data_files(results)]
    assert run_cli("--results", str(results), "--manifest", str(manifest)) == 0
    assert "8 files checked, 0 differ, 0 missing" in capsys.readouterr().out


def test_files_without_volatile_fields_keep_their_sha256(results: Path):
    plain = results / "tune" / "demo" / "best_model.yaml"
    assert file_digest(plain) == hashlib.sha256(plain.read_bytes()).hexdigest()
    bare = results / "bare.fits"
    fits.HDUList([fits.PrimaryHDU(np.ones(5)), fits.ImageHDU(np.zeros(3), name="FLUX")]).writeto(bare)
    assert file_digest(bare) == hashlib.sha256(bare.read_bytes()).hexdigest()


def test_times_hashes_and_provenance_do_not_count(results: Path, tmp_path: Path):
    """A second run, in another clone: other times, provenance, git revision, model hash and the
    absolute folder its inputs were read from."""
    manifest = tmp_path / "m.sha256"
    write_manifest(results, manifest)
    flux = np.arange(12, dtype=np.float32).reshape(3, 4)
    for path in (results / "simulated" / "survey" / "coadd.fits",):
        path.unlink()
        write_fits(
            path,
            flux,
            created="2026-12-07T11:02:03.5+00:00",
            gitrev="5589758abcde-dirty",
            srcroot="/home/b/clone",
        )
    write_model(results / "models" / "initial" / "initial" / "model.pt", torch.ones(2, 3), seconds=99.25)
    (results / "models" / "initial" / "initial" / "history.csv").write_text(
        "epoch,val_loss,seconds\n1,0.5,3.1\n2,0.25,2.7\n"
    )
    (results / "scores" / "initial" / "initial" / "test_z3.json").write_text(
        json.dumps({"score": 0.937, "model_sha256": "cd" * 32}, indent=2)
    )
    (results / "summary.md").write_text(
        "# Scores\n\n| model | score | train_seconds |\n|---|---|---|\n| initial | 0.937 | 7.5 |\n"
    )
    result = check_manifest(results, manifest)
    assert result.ok and result.checked == 8, result


def test_first_difference_in_dag_order_and_exit_code(results: Path, tmp_path: Path, capsys):
    manifest = tmp_path / "m.sha256"
    write_manifest(results, manifest)
    flux = np.arange(12, dtype=np.float32).reshape(3, 4)
    # combos/ sorts before testsets/ by name, but the test set is made first
    for name, offset in (("combos/initial/train.fits", 2.0), ("testsets/test_z3.fits", 1.0)):
        (results / name).unlink()
        changed = flux + offset
        changed[1, 2] = np.nextafter(changed[1, 2], np.float32(np.inf))  # one ulp
        write_fits(results / name, changed)
    write_model(results / "models" / "initial" / "initial" / "model.pt", torch.ones(2, 3) * 1.0000001)
    (results / "summary.md").unlink()

    result = check_manifest(results, manifest)
    assert result.differing == [
        "testsets/test_z3.fits",
        "combos/initial/train.fits",
        "models/initial/initial/model.pt",
    ]
    assert result.missing == ["summary.md"] and result.first() == "testsets/test_z3.fits"
    capsys.readouterr()
    assert run_cli("--results", str(results), "--manifest", str(manifest)) == 1
    out = capsys.readouterr().out
    assert "3 differ, 1 missing" in out
    assert "first in DAG order: results/testsets/test_z3.fits (rule testset) differs" in out


def test_new_data_files_are_listed_but_pass(results: Path, tmp_path: Path, capsys):
    manifest = tmp_path / "m.sha256"
    write_manifest(results, manifest)
    (results / "checks").mkdir()
    (results / "checks" / "leakage.json").write_text("{}")
    assert run_cli("--results", str(results), "--manifest", str(manifest)) == 0
    assert "not in the manifest: results/checks/leakage.json" in capsys.readouterr().out


def test_plain_sha256sum_manifest_is_checked_on_bytes(results: Path, tmp_path: Path):
    """A manifest `sha256sum` wrote (no header): every byte counts, provenance included."""
    names = data_files(results)
    manifest = tmp_path / "plain.sha256"
    manifest.write_text(
        "".join(f"{hashlib.sha256((results / n).read_bytes()).hexdigest()}  results/{n}\n" for n in names)
    )
    content, entries = read_manifest(manifest)
    assert not content and list(entries) == names
    assert check_manifest(results, manifest).ok
    path = results / "simulated" / "survey" / "coadd.fits"
    path.unlink()
    write_fits(path, np.arange(12, dtype=np.float32).reshape(3, 4), created="2026-12-07T00:00:00+00:00")
    assert check_manifest(results, manifest).differing == ["simulated/survey/coadd.fits"]


def test_missing_manifest_or_results(tmp_path: Path, results: Path, capsys):
    assert run_cli("--results", str(results), "--manifest", str(tmp_path / "none.sha256")) == 1
    assert run_cli("--results", str(tmp_path / "nowhere")) == 1
    assert "no manifest" in capsys.readouterr().err


def test_markdown_hashes_masked_and_checkpoints_left_out(tmp_path: Path):
    root = tmp_path / "results"
    summary = root / "classify" / "demo_survey" / "summary.md"
    summary.parent.mkdir(parents=True)
    summary.write_text(
        "Model `model.pt` (sha256 110c31cf696d...), c_th = 0.5000.\n\n| | count |\n|---|---:|\n| LBG | 1,665 |\n"
    )
    (root / "checkpoints" / "initial" / "initial").mkdir(parents=True)
    (root / "checkpoints" / "initial" / "initial" / "checkpoint.pt").write_bytes(b"resume point")
    assert data_files(root) == ["classify/demo_survey/summary.md"]
    before = file_digest(summary)
    summary.write_text(summary.read_text().replace("110c31cf696d", "3c4118fa794a"))
    assert file_digest(summary) == before
    summary.write_text(summary.read_text().replace("1,665", "1,664"))
    assert file_digest(summary) != before


def test_npz_compares_members_and_meta_without_provenance(tmp_path: Path):
    path = tmp_path / "results" / "baseline" / "learned_templates" / "initial.npz"
    path.parent.mkdir(parents=True)

    def save(created: str, basis: np.ndarray) -> str:
        meta = json.dumps(
            {
                "options": {"n": 5},
                "provenance": {"created_utc": created},
                "seconds": 1.5,
                "train": {"path": "results/combos/initial/train.fits", "sha256": created * 2},
            }
        )
        np.savez_compressed(path, b0_basis=basis, meta=np.array(meta))
        return file_digest(path)

    basis = np.ones((5, 7), np.float32)
    first = save("2026-12-06T04:46:35", basis)
    assert save("2026-12-07T10:00:00", basis) == first  # another time, training-file hash, duration
    basis[2, 3] = np.nextafter(np.float32(1), np.float32(2))
    assert save("2026-12-07T10:00:00", basis) != first
