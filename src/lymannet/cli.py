"""Command line: `lymannet where` (or `python -m lymannet.cli where`) tells where the results are."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lymannet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    where_parser = commands.add_parser("where", help="print where the demo's plots and score table are")
    where_parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    if args.command == "where":
        return where(args.results)
    return 2


if __name__ == "__main__":
    sys.exit(main())
