"""Command line (`lymannet`, or `python -m lymannet.cli`):

lymannet where                                   where the demo's results are
lymannet classify --model MODEL COADD [...] --output DIR
                                                 classify DESI coadds into survey catalogues
lymannet vi-sample CATALOGUE --output DIR [...]  draw a stratified visual-inspection sample of a
                                                 catalogue: its spectra as a DESI coadd, and weights
lymannet check-demo [--manifest FILE] [--write]  check a finished demo's data files against a
                                                 manifest (or write it), first difference in DAG order
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .preprocess import INFERENCE_BATCH

VI_SAMPLE_DESCRIPTION = (
    "Draw objects of a survey catalogue (lymannet classify's catalogue.fits) in 10 equal-width "
    "strata of PROB (CONFIDENCE where the catalogue has no calibrated PROB), more of them around "
    "the working point; rows with ZWARN != 0 are never drawn."
)


def where(results: Path) -> int:
    summary_md = results / "summary.md"
    if not summary_md.exists():
        print(f"no results yet under {results}/ (run ./run demo)", file=sys.stderr)
        return 1
    print("\nlymannet demo finished.")
    print(f"  score table (P=E score per model and test set): {summary_md}  (CSV: {results / 'summary.csv'})")
    for figure in sorted((results / "plots").glob("compare_*.png")):
        print(f"  purity/efficiency comparison: {figure}")
    for figure in sorted((results / "scores").glob("*/*/*.png")):
        print(f"  purity/efficiency and redshift figures: {figure}")
    report = results / "report.html"
    if report.exists():
        print(f"  HTML report (every figure, with captions): {report}\n")
    else:
        print(f"  HTML report: snakemake --report {report}\n")
    print(summary_md.read_text())
    return 0


def classify(args: argparse.Namespace) -> int:
    """Per-file catalogues mirrored below --output, merged into catalogue.fits, failures.tsv and
    a summary; the same code as the workflow's classify rule (lymannet.classify)."""
    from .classify import ClassifyOptions
    from .survey import classify_survey
    from .errors import LymannetError
    from .runtime import setup_logging

    setup_logging()
    working_point = (
        {"purity": args.purity}
        if args.purity is not None
        else {"efficiency": args.efficiency} if args.efficiency is not None else None
    )
    try:
        options = ClassifyOptions.from_dict(
            {
                "c_th": args.c_th,
                "min_lines": args.min_lines,
                "batch_size": args.batch_size,
                "bf16": args.bf16,
                "device": args.device,
                "strict": args.strict,
                "fiberstatus": args.fiberstatus,
                "target_fraction": args.target_fraction,
                "working_point": working_point,
            }
        )
        summary = classify_survey(args.model, args.coadds, args.output, options, truth=args.truth)
    except LymannetError as error:
        print(f"lymannet classify: error: {error}", file=sys.stderr)
        return 1
    for quantity, count in summary.table():
        print(f"  {quantity}: {count:,}")
    print(
        f"catalogue: {args.output / 'catalogue.fits'}; summary: {args.output / 'summary.md'}, "
        f"{args.output / 'summary.png'}"
    )
    return 0


def _classify_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "classify",
        help="classify DESI coadd files with a trained model into survey catalogues",
        description="Run a lymannet model.pt or QuasarNET Keras weights (.h5) over DESI coadd files (tile-based "
        "or healpix; quote a glob such as 'healpix/*/*/*/*/coadd-*.fits' to let lymannet expand "
        "it). Writes one catalogue per coadd, mirroring its path below the coadds' common folder, "
        "plus catalogue.fits (merged), failures.tsv and summary.md/.csv/.png in --output.",
    )
    parser.add_argument("coadds", nargs="+", metavar="COADD", help="coadd files or glob patterns")
    parser.add_argument(
        "--model", required=True, type=Path, help="model.pt of a lymannet run, or a Keras .h5"
    )
    parser.add_argument("--output", required=True, type=Path, metavar="DIR")
    parser.add_argument(
        "--c-th",
        type=float,
        default=None,
        help="line confidence threshold (default: the model's working point; 0.5 for uncalibrated "
        "weights)",
    )
    parser.add_argument(
        "--target-fraction",
        type=float,
        default=None,
        help="the survey's expected target fraction: PROB is corrected to it and the working point "
        "chosen again for it (calibrated models)",
    )
    point = parser.add_mutually_exclusive_group()
    point.add_argument("--purity", type=float, default=None, help="working point: this validation purity")
    point.add_argument(
        "--efficiency", type=float, default=None, help="working point: this validation efficiency"
    )
    parser.add_argument(
        "--truth",
        default=None,
        help="truth table (TARGETID, SPECTYPE, Z) to measure purity and efficiency in the summary",
    )
    parser.add_argument(
        "--min-lines", type=int, default=1, help="lines above c_th for IS_<CLASS>_QN (default 1)"
    )
    parser.add_argument("--batch-size", type=int, default=INFERENCE_BATCH)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the network (fp32 by default)")
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    parser.add_argument(
        "--fiberstatus",
        choices=("zero_only", "any"),
        default="zero_only",
        help="keep fibres with COADD_FIBERSTATUS != 0 with 'any'",
    )


def _vi_sample_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "vi-sample",
        help="draw a stratified visual-inspection sample of a survey catalogue",
        description=f"{VI_SAMPLE_DESCRIPTION} Writes coadd-vi.fits (their spectra, a DESI coadd) and "
        "vi_sample.csv (stratum, inclusion probability and weight of each object) in --output.",
    )
    parser.add_argument(
        "catalogue", type=Path, metavar="CATALOGUE", help="catalogue.fits or a per-file catalogue"
    )
    parser.add_argument("--output", required=True, type=Path, metavar="DIR")
    parser.add_argument("--n", type=int, default=100, help="objects to draw (default 100)")
    parser.add_argument(
        "--coadd-root",
        type=Path,
        metavar="DIR",
        help="folder the catalogue's COADD paths are below (default: its SRCROOT header)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    parser.add_argument(
        "--working-point",
        type=float,
        metavar="P",
        help="threshold on the score the strata around it favour (default: the catalogue's "
        "WPPROB for PROB, CTHRESH for CONFIDENCE, else 0.5)",
    )


def vi_sample(args: argparse.Namespace) -> int:
    """coadd-vi.fits and vi_sample.csv in --output; the same code as the workflow's vi_sample rule
    (lymannet.visample). Bad input exits 1 with a one-line message (lymannet.runtime.run)."""
    from .runtime import run
    from .visample import draw_vi_sample

    sample = run(
        draw_vi_sample,
        catalogue_path=args.catalogue,
        out_dir=args.output,
        n=args.n,
        coadd_root=args.coadd_root,
        seed=args.seed,
        working_point=args.working_point,
    )
    design = sample.design
    print(
        f"{sample.n_drawn} of {design.n_eligible.sum():,} eligible objects drawn, stratified in {design.score} "
        f"(working point {design.working_point:g}, seed {args.seed})"
    )
    print(f"spectra: {sample.coadd}; objects, strata and weights: {sample.table}")
    return 0


DEMO_MANIFEST = Path("docs/demo-manifest.sha256")


def _check_demo_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "check-demo",
        help="check a finished demo's data files against a manifest (or write one)",
        description="Compare every data file of a finished demo (FITS, CSV, TSV, NPY/NPZ, .pt, JSON, YAML, "
        "Markdown under --results) with a manifest of digests, and name the first differing file "
        "in DAG order. Digests leave out what records when, where or how fast a file was made "
        "(provenance, timings, memory peaks, model-file hashes; see lymannet.manifest). A plain "
        "`sha256sum` file is checked on the files' bytes. Exit 1 when a file differs or is missing.",
    )
    parser.add_argument("--manifest", type=Path, default=DEMO_MANIFEST, help=f"default {DEMO_MANIFEST}")
    parser.add_argument(
        "--results", type=Path, default=Path("results"), help="the demo's results (default results)"
    )
    parser.add_argument(
        "--write", action="store_true", help="write the manifest of --results instead of checking"
    )


def check_demo(args: argparse.Namespace) -> int:
    from .manifest import check_manifest, rule_of, write_manifest

    if not args.results.is_dir():
        print(f"lymannet check-demo: error: no results folder {args.results}", file=sys.stderr)
        return 1
    if args.write:
        count = write_manifest(args.results, args.manifest)
        print(f"wrote {args.manifest}: {count} data files of {args.results}")
        return 0
    if not args.manifest.is_file():
        print(
            f"lymannet check-demo: error: no manifest {args.manifest} (write one with --write)",
            file=sys.stderr,
        )
        return 1
    result = check_manifest(args.results, args.manifest)
    kind = "content without volatile fields" if result.content else "bytes (a plain sha256sum manifest)"
    print(
        f"{args.results} against {args.manifest} ({kind}): {result.checked} files checked, "
        f"{len(result.differing)} differ, {len(result.missing)} missing, {len(result.extra)} not in the manifest"
    )
    first = result.first()
    if first is not None:
        what = "missing" if first in result.missing else "differs"
        print(f"first in DAG order: results/{first} (rule {rule_of(first) or '?'}) {what}")
    for what, names in (
        ("differs", result.differing),
        ("missing", result.missing),
        ("not in the manifest", result.extra),
    ):
        for name in names[:20]:
            print(f"  {what}: results/{name}")
        if len(names) > 20:
            print(f"  ... {len(names) - 20} more {what}")
    if result.ok:
        print("the demo matches the manifest")
    return 0 if result.ok else 1


def _paired_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "paired",
        help="compare two prediction catalogues of one test set: B's P = E score minus A's, paired",
        description="Score two prediction catalogues of the same test set and bootstrap the difference "
        "of their P = E scores on the same resamples of the test objects (targets and contaminants "
        "resampled separately): what they share cancels, so a claim that B beats A holds when the "
        "difference's interval excludes 0. Score options (dz_max, min_lines, resamples) from --config.",
    )
    parser.add_argument(
        "a", type=Path, help="catalogue A (e.g. results/predictions/classic/<combo>/<test>.fits)"
    )
    parser.add_argument("b", type=Path, help="catalogue B, the same test set")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a config whose `score` slice to use (default: the defaults)",
    )


def paired(args: argparse.Namespace) -> int:
    import yaml

    from .errors import LymannetError
    from .evaluation import paired_score_difference
    from .metrics import ScoreOptions
    from .predict import read_catalogue

    try:
        score = (yaml.safe_load(args.config.read_text()) or {}).get("score", {}) if args.config else {}
        options = ScoreOptions.from_config(score)
        a, b = read_catalogue(args.a), read_catalogue(args.b)
        result = paired_score_difference(a.table, a.c_line, b.table, b.c_line, options)
    except (LymannetError, ValueError, OSError) as error:
        print(f"lymannet paired: error: {error}", file=sys.stderr)
        return 1
    d = result["difference"]
    print(f"A {args.a}: P = E {result['score_a']:.3f}")
    print(f"B {args.b}: P = E {result['score_b']:.3f}")
    print(
        f"B - A = {d['value']:+.3f}, 68% [{d['lo68']:+.3f}, {d['hi68']:+.3f}], 95% [{d['lo95']:+.3f}, "
        f"{d['hi95']:+.3f}] over {d['n_resamples']} paired resamples of {result['n_spectra']} spectra; "
        f"B above A in {100 * result['p_b_above_a']:.1f}% of them"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lymannet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    where_parser = commands.add_parser("where", help="print where the demo's plots and score table are")
    where_parser.add_argument("--results", type=Path, default=Path("results"))
    _classify_parser(commands)
    _vi_sample_parser(commands)
    _check_demo_parser(commands)
    _paired_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "where":
        return where(args.results)
    if args.command == "classify":
        return classify(args)
    if args.command == "vi-sample":
        return vi_sample(args)
    if args.command == "check-demo":
        return check_demo(args)
    if args.command == "paired":
        return paired(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
