"""The options the MNIST benchmarks share: where the data is, where the report goes, --smoke.

A smoke run (synthetic data, a few trials) is a test of the benchmark, not a measurement, so it
writes elsewhere by default and never overwrites a measured report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hpsearch.plumbing.cli import ArgumentParser


def report_parser(doc: str | None, out: Path, smoke_out: Path, smoke: str) -> ArgumentParser:
    """A parser with --data-dir, --cache-dir, --out and --smoke (``smoke`` says what a smoke run is)."""
    p = ArgumentParser(doc)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="holds MNIST/raw/ (only read)")
    p.add_argument("--cache-dir", type=Path, help="prepared datasets (default ./data/cache)")
    p.add_argument("--out", type=Path, help=f"the report (default {out}; --smoke: {smoke_out})")
    p.add_argument("--smoke", action="store_true", help=smoke)
    p.set_defaults(report_out=out, smoke_out=smoke_out)
    return p


def parsed(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, and point --out at the smoke report when --smoke is given without one."""
    args = p.parse_args(argv)
    args.out = args.out or (args.smoke_out if args.smoke else args.report_out)
    return args
