"""Survey catalogues, merged (rule `classify_merge`, the command `lymannet classify`): every batch's
per-file catalogues (:mod:`lymannet.classify`) into one `catalogue.fits` appended file by file,
`failures.tsv` for the files that could not be read, and the summary (counts, the cut and its
source, N(z), PROB beside the purity reached when a truth is given) as Markdown, CSV and a figure."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import fitsio
import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .classify import (  # noqa: E402
    EXTNAME,
    MANIFEST_FIELDS,
    ClassifyOptions,
    FileOutcome,
    catalogue_dtype,
    classify_files,
    load_classifier,
    read_manifest,
)
from .errors import ConfigError, InputFileError  # noqa: E402
from .figures import save_figure  # noqa: E402
from .fileio import atomic_path, first_line, write_text_atomic  # noqa: E402
from .ingest import load_truth  # noqa: E402
from .metrics import DEFAULT_C_TH, ScoreOptions, correct_redshift  # noqa: E402
from .plan import FAILURES_NAME, MERGED_NAME, expand_files, mirror_root, mirrored_name  # noqa: E402

SAME_RULE_KEYS = (
    "MODELSHA",
    "CTHRESH",
    "MINLINES",
    "FIBSTAT",
    "PRIORSRV",
)  # a merged catalogue has one of each


CONFIDENCE_BINS = np.linspace(0.0, 1.0, 51)


Z_BIN = 0.05


def merge_batches(
    manifests: Sequence[str | Path],
    out_dir: str | Path,
    title: str = "",
    root: str | None = None,
    truth: str | None = None,
    score: Mapping[str, Any] | None = None,
) -> Summary:
    """The `classify_merge` job: every batch's outcomes -> catalogue.fits, failures.tsv, summary."""
    outcomes = [outcome for manifest in manifests for outcome in read_manifest(manifest)]
    return merge_catalogues(outcomes, out_dir, title, root=root, truth=truth, score=score)


def classify_survey(
    model: str | Path,
    files: Sequence[str],
    out_dir: str | Path,
    options: Mapping[str, Any] | ClassifyOptions,
    root: str | None = None,
    truth: str | None = None,
    score: Mapping[str, Any] | None = None,
) -> Summary:
    """The command `lymannet classify`: per-file catalogues mirrored below `out_dir`, then merged."""
    files = expand_files(files)
    if not files:
        raise ConfigError("no coadd files match the given paths")
    root = root or mirror_root(files)
    reserved = {MERGED_NAME, FAILURES_NAME, "summary.csv", "summary.md", "summary.png"}
    clash = [path for path in files if mirrored_name(path, root) in reserved]
    if clash:
        raise ConfigError(
            f"{clash[0]} would be written over the merged output of the same name; "
            "put the coadds in a folder"
        )
    opts = options if isinstance(options, ClassifyOptions) else ClassifyOptions.from_dict(options)
    classifier = load_classifier(model, opts.device)
    outcomes = classify_files(classifier, files, root, out_dir, opts)
    return merge_catalogues(outcomes, out_dir, root=root, truth=truth, score=score)


@dataclass
class Summary:
    """What the merged catalogue holds, accumulated file by file (bounded memory)."""

    target_class: str
    counts: dict[str, int]
    confidence_histogram: np.ndarray
    z_selected: list[np.ndarray]
    header: dict[str, Any]
    classified: dict[str, list[np.ndarray]] = field(default_factory=dict)  # TARGETID, Z, PROB, selected
    truth: dict[str, Any] | None = None  # purity and efficiency against a truth table

    def table(self) -> list[tuple[str, int]]:
        c, cls = self.counts, self.target_class
        return [
            ("coadd files", c["files"]),
            ("files that failed (failures.tsv)", c["failed"]),
            ("fibres read", c["n_rows"]),
            ("non-science fibres left out", c["n_non_science"]),
            ("spectra without valid pixels, left out", c["n_no_data"]),
            ("spectra classified", c["n_classified"]),
            (f"{cls} (IS_{cls}_QN = 1)", c["n_selected"]),
            (f"not {cls}", c["n_classified"] - c["n_selected"]),
        ]


def merge_catalogues(
    outcomes: Sequence[FileOutcome],
    out_dir: str | Path,
    title: str = "",
    root: str | None = None,
    truth: str | None = None,
    score: Mapping[str, Any] | None = None,
) -> Summary:
    """catalogue.fits (every per-file catalogue, in file order), failures.tsv and the summary
    (summary.csv, summary.md, summary.png) in `out_dir`, each written atomically; with a truth
    table, the summary also measures purity and efficiency against it."""
    out_dir = Path(out_dir)
    good = [o for o in outcomes if o.status != "failed"]
    failed = [o for o in outcomes if o.status == "failed"]
    _write_failures(out_dir / FAILURES_NAME, failed)
    if not good:
        first = failed[0] if failed else None
        raise InputFileError(
            f"none of the {len(outcomes)} coadd files could be classified"
            + (f" (first: {first.file}: {first.reason})" if first else ""),
            out_dir,
        )
    # COADD holds each catalogue's path below out_dir: the widest sets the merged column's width.
    width = max(len(os.path.relpath(o.catalogue, out_dir)) for o in good)
    summary = _merge(good, out_dir / MERGED_NAME, width, len(outcomes), len(failed), root)
    if truth:
        summary.truth = truth_report(summary, truth, score or {})
    _write_summary(summary, out_dir, title)
    return summary


def _write_failures(path: Path, failed: Sequence[FileOutcome]) -> None:
    lines = ["file\treason"] + [f"{o.file}\t{' '.join(o.reason.split())}" for o in failed]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _read_catalogue(path: str) -> tuple[np.ndarray, Any]:
    try:
        with fitsio.FITS(path) as fits:
            return fits[EXTNAME].read(), fits[EXTNAME].read_header()
    except (OSError, ValueError) as error:
        raise InputFileError(
            f"per-file catalogue unreadable ({first_line(error)}); delete the batch manifests "
            "under batches/ to classify again",
            path,
        ) from None


def _merge(
    good: Sequence[FileOutcome], path: Path, width: int, n_files: int, n_failed: int, root: str | None = None
) -> Summary:
    first, header = _read_catalogue(good[0].catalogue)
    names = [n[2:] for n in first.dtype.names if n.startswith("C_")]
    target_class = str(header["TARGCLS"]).strip()
    dtype = catalogue_dtype(names, target_class, width)
    per_file = ("SRCSIZE", "SRCMTIME", "NROWS", "NNONSCI", "NNODATA", "NCLASSIF", "NSELECT", "EXTNAME")
    cards = [
        {"name": key, "value": header[key], "comment": header.get_comment(key)}
        for key in header.keys()
        if key not in per_file
        and key.isupper()
        and not key.startswith(("NAXIS", "TTYPE", "TFORM", "TDIM", "TUNIT"))
        and key not in ("XTENSION", "BITPIX", "PCOUNT", "GCOUNT", "TFIELDS")
    ]
    cards += [
        {"name": "NFILES", "value": n_files, "comment": "coadd files asked for"},
        {"name": "NFAILED", "value": n_failed, "comment": "files that could not be read (failures.tsv)"},
    ]
    if root:
        cards.append(
            {"name": "SRCROOT", "value": os.path.abspath(root), "comment": "folder COADD is relative to"}
        )
    counts = dict.fromkeys(("n_rows", "n_non_science", "n_no_data", "n_classified", "n_selected"), 0)
    counts.update(files=n_files, failed=n_failed)
    histogram = np.zeros(len(CONFIDENCE_BINS) - 1, np.int64)
    z_selected: list[np.ndarray] = []
    classified: dict[str, list[np.ndarray]] = {key: [] for key in ("TARGETID", "Z", "PROB", "SELECTED")}
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(np.zeros(0, dtype), extname=EXTNAME, header=cards)
        for outcome in good:
            records, file_header = _read_catalogue(outcome.catalogue)
            _check_same_rule(file_header, header, outcome.catalogue)
            records = records.astype(dtype)
            fits[EXTNAME].append(records)
            selected = records[f"IS_{target_class}_QN"] == 1
            done = records["ZWARN"] == 0
            histogram += np.histogram(records["CONFIDENCE"][done], CONFIDENCE_BINS)[0]
            z_selected.append(records["Z"][selected].astype(np.float32))
            for key, values in (
                ("TARGETID", records["TARGETID"]),
                ("Z", records["Z"]),
                ("PROB", records["PROB"]),
                ("SELECTED", selected),
            ):
                classified[key].append(values[done])
            for key in counts.keys() & set(MANIFEST_FIELDS):
                counts[key] += getattr(outcome, key)
    return Summary(
        target_class, counts, histogram, z_selected, {c["name"]: c["value"] for c in cards}, classified
    )


def truth_report(summary: Summary, truth_path: str, score: Mapping[str, Any]) -> dict[str, Any]:
    """Purity and efficiency of the catalogue's selection against a truth table (TARGETID,
    SPECTYPE, Z): efficiency over every true target of the truth that the coadds hold a row
    for, classified or not; the expected purity is the mean PROB of the selected."""
    opts = ScoreOptions.from_config(dict(score))
    truth = load_truth(truth_path).set_index("TARGETID")
    targetid = np.concatenate(summary.classified["TARGETID"])
    z = np.concatenate(summary.classified["Z"])
    selected = np.concatenate(summary.classified["SELECTED"])
    prob = np.concatenate(summary.classified["PROB"])
    known = np.isin(targetid, truth.index.to_numpy())
    rows = truth.reindex(targetid[known])
    is_target = rows["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy() == opts.target_class.upper()
    good = is_target & correct_redshift(z[known], rows["Z"].to_numpy(float), opts.dz_max, opts.dv_max_kms)
    sel = selected[known]
    n_targets = int(
        (truth["SPECTYPE"].astype(str).str.strip().str.upper() == opts.target_class.upper()).sum()
    )
    report = {
        "truth": str(truth_path),
        "correct_redshift": opts.correct_redshift_rule,
        "n_matched": int(known.sum()),
        "n_true_targets": n_targets,
        "n_selected": int(sel.sum()),
        "n_good_selected": int((sel & good).sum()),
        "purity": float((sel & good).sum() / sel.sum()) if sel.any() else None,
        "efficiency": float((sel & good).sum() / n_targets) if n_targets else None,
        "expected_purity": (
            float(np.nanmean(prob[known][sel])) if sel.any() and np.isfinite(prob).any() else None
        ),
        "selected_by_population": {},
    }
    spectype = rows["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy()
    for population in sorted(set(spectype[sel])):
        report["selected_by_population"][population] = int((sel & (spectype == population)).sum())
    return report


def _check_same_rule(header: Any, reference: Any, path: str) -> None:
    for key in SAME_RULE_KEYS:
        if header.get(key) != reference.get(key):
            raise InputFileError(
                f"{key} = {header.get(key)!r} but the first catalogue has {reference.get(key)!r}: "
                "catalogues of different models or detection rules cannot be merged",
                path,
            )


def _write_summary(summary: Summary, out_dir: Path, title: str) -> None:
    """summary.csv (quantity, count), summary.md (the same, with the rule) and summary.png."""
    rows = summary.table()
    measured = truth_rows(summary.truth)
    table = pd.DataFrame(
        rows + [(q, None if v is None else round(v, 6)) for q, v in measured], columns=["quantity", "count"]
    )
    write_text_atomic(out_dir / "summary.csv", table.to_csv(index=False))  # quoted: names hold commas
    h = summary.header
    z = np.concatenate(summary.z_selected) if summary.z_selected else np.zeros(0)
    lines = [
        f"# Survey catalogue {title}".rstrip(),
        "",
        f"Model `{h.get('MODEL')}` ({h.get('WORIGIN')}, sha256 {str(h.get('MODELSHA'))[:12]}...), "
        f"c_th = {float(h.get('CTHRESH')):.4f} ({h.get('CTHSRC', 'given')}), min_lines = {h.get('MINLINES')}.",
        "",
        _calibration_sentence(h),
        "",
        "| | count |",
        "|---|---:|",
    ] + [f"| {q} | {n:,} |" for q, n in rows]
    if summary.truth:
        t = summary.truth
        goal = f"{h.get('WPKIND')} {h.get('WPGOAL')}" if h.get("CALIB") else "none (uncalibrated)"
        lines += [
            "",
            f"Against the truth `{t['truth']}` ({t['n_matched']:,} classified rows matched; correct "
            f"redshift: {t['correct_redshift']}); working point asked for: {goal}.",
            "",
            "| | value |",
            "|---|---:|",
        ] + [f"| {q} | {_value(v)} |" for q, v in measured]
        lines += [
            "",
            "Selected, by true SPECTYPE: "
            + ", ".join(f"{k} {n:,}" for k, n in t["selected_by_population"].items())
            + ".",
        ]
    if len(z):
        lines += [
            "",
            f"Redshift of the {summary.target_class} selected: median {np.median(z):.3f}, "
            f"5-95% {np.percentile(z, 5):.3f}-{np.percentile(z, 95):.3f}.",
        ]
    write_text_atomic(out_dir / "summary.md", "\n".join(lines) + "\n")
    _summary_figure(summary, z, out_dir / "summary.png", title)


def truth_rows(truth: Mapping[str, Any] | None) -> list[tuple[str, float | None]]:
    if not truth:
        return []
    return [
        ("purity against the truth", truth["purity"]),
        ("efficiency against the truth", truth["efficiency"]),
        ("expected purity (mean PROB of the selected)", truth["expected_purity"]),
        ("true targets in the truth", truth["n_true_targets"]),
        ("selected with a correct redshift", truth["n_good_selected"]),
    ]


def _value(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:,}" if isinstance(value, (int, np.integer)) else f"{value:.3f}"


def _calibration_sentence(header: Mapping[str, Any]) -> str:
    if not header.get("CALIB"):
        return "Uncalibrated weights: no PROB or ZERR (NaN columns), c_th is not a working point."
    prior = float(header.get("PRIORSRV", header.get("PRIORVAL")))
    return (
        f"PROB: calibrated on the model's validation split (target fraction {float(header['PRIORVAL']):.3f}), "
        f"given here for a target fraction of {prior:.3f}; working point {header.get('WPKIND')} "
        f"{header.get('WPGOAL')} = PROB > {float(header.get('WPPROB')):.3f}. ZWARN != 0: not classified "
        f"({header.get('ZWBITS')})."
    )


def _summary_figure(summary: Summary, z: np.ndarray, path: Path, title: str) -> None:

    fig, (ax_z, ax_c) = plt.subplots(1, 2, figsize=(11, 4))
    cls, h = summary.target_class, summary.header
    if len(z):
        edges = np.arange(np.floor(z.min() / Z_BIN) * Z_BIN, z.max() + 2 * Z_BIN, Z_BIN)
        ax_z.hist(z, edges, histtype="stepfilled", alpha=0.7)
    else:
        ax_z.text(0.5, 0.5, f"no {cls} selected", ha="center", va="center", transform=ax_z.transAxes)
    ax_z.set(
        xlabel="Z (most confident line)",
        ylabel=f"{cls} per {Z_BIN} in z",
        title=f"N(z) of the {summary.counts['n_selected']:,} {cls} selected",
    )
    ax_c.stairs(summary.confidence_histogram, CONFIDENCE_BINS, fill=True, alpha=0.7)
    ax_c.axvline(
        float(h.get("CTHRESH", DEFAULT_C_TH)), color="k", linestyle="--", label=f"c_th = {h.get('CTHRESH')}"
    )
    ax_c.set_yscale("log")  # the few confident spectra would vanish beside the many others
    ax_c.set_ylim(bottom=0.7)
    ax_c.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_c.set(
        xlabel="CONFIDENCE (best line)",
        ylabel="spectra",
        title=f"{summary.counts['n_classified']:,} spectra classified",
    )
    ax_c.legend()
    fig.suptitle(f"{title} - {h.get('MODEL')}, min_lines = {h.get('MINLINES')}".lstrip(" -"))
    save_figure(fig, path)
