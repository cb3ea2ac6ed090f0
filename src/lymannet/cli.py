"""Command line (`lymannet`, or `python -m lymannet.cli`):

  lymannet where                                   where the demo's results are
  lymannet classify --model MODEL COADD [...] --output DIR
                                                   classify DESI coadds into survey catalogues
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .preprocess import INFERENCE_BATCH


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
    from .classify import ClassifyOptions, classify_survey
    from .errors import LymannetError
    from .runtime import setup_logging

    setup_logging()
    options = ClassifyOptions(c_th=args.c_th, min_lines=args.min_lines, batch_size=args.batch_size, bf16=args.bf16,
                              device=args.device, strict=args.strict, fiberstatus=args.fiberstatus)
    try:
        summary = classify_survey(args.model, args.coadds, args.output, options)
    except LymannetError as error:
        print(f"lymannet classify: error: {error}", file=sys.stderr)
        return 1
    for quantity, count in summary.table():
        print(f"  {quantity}: {count:,}")
    print(f"catalogue: {args.output / 'catalogue.fits'}; summary: {args.output / 'summary.md'}, "
          f"{args.output / 'summary.png'}")
    return 0


def _classify_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "classify", help="classify DESI coadd files with a trained model into survey catalogues",
        description="Run a lymannet model.pt or QuasarNET Keras weights (.h5) over DESI coadd files (tile-based "
                    "or healpix; quote a glob such as 'healpix/*/*/*/*/coadd-*.fits' to let lymannet expand "
                    "it). Writes one catalogue per coadd, mirroring its path below the coadds' common folder, "
                    "plus catalogue.fits (merged), failures.tsv and summary.md/.csv/.png in --output.")
    parser.add_argument("coadds", nargs="+", metavar="COADD", help="coadd files or glob patterns")
    parser.add_argument("--model", required=True, type=Path, help="model.pt of a lymannet run, or a Keras .h5")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR")
    parser.add_argument("--c-th", type=float, default=0.5, help="line confidence threshold (default 0.5)")
    parser.add_argument("--min-lines", type=int, default=1, help="lines above c_th for IS_<CLASS>_QN (default 1)")
    parser.add_argument("--batch-size", type=int, default=INFERENCE_BATCH)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the network (fp32 by default)")
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    parser.add_argument("--fiberstatus", choices=("zero_only", "any"), default="zero_only",
                        help="keep fibres with COADD_FIBERSTATUS != 0 with 'any'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lymannet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    where_parser = commands.add_parser("where", help="print where the demo's plots and score table are")
    where_parser.add_argument("--results", type=Path, default=Path("results"))
    _classify_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "where":
        return where(args.results)
    if args.command == "classify":
        return classify(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
