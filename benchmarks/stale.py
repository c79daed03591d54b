"""Which committed benchmark reports measured older product code than HEAD's.

A report is stamped with the product commit it measured. When the product's code has changed
since (search/, trainables/, spaces/, ...; not benchmarks/ or the reports themselves), its
figures describe an older product: still true of that commit, but maybe not of this one. This
lists them, with what changed, so that whoever changes the product can decide which reports to
regenerate. It informs and never fails: CI checks only that each report's measurement version
is its script's (tests/test_bench_reports.py).

    python benchmarks/stale.py            # every report, stale or not
    python benchmarks/stale.py --stale    # only the stale ones
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from hpsearch.benchmarks.machine import HEADER, REPO
from hpsearch.plumbing.cli import ArgumentParser, run_main
from hpsearch.plumbing.errors import UsageError

# What a benchmark measures: the product. Its own scripts and outputs are versioned otherwise.
PRODUCT = ("hpsearch", "search", "trainables", "spaces", "plumbing", "reports", "pyproject.toml")
NOT_PRODUCT = (":!reports/benchmarks",)


@dataclass(frozen=True)
class ReportAge:
    report: str
    commit: str
    changed: tuple[str, ...]  # product files that differ between the report's commit and HEAD

    @property
    def stale(self) -> bool:
        return bool(self.changed)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def report_ages(repo: Path = REPO) -> list[ReportAge]:
    """Every report under reports/benchmarks/, with the product files changed since its commit."""
    ages = []
    for path in sorted((repo / "reports/benchmarks").glob("*.md")):
        header = HEADER.fullmatch(path.read_text().splitlines()[0])
        if header is None:
            raise UsageError(f"{path.relative_to(repo)}: no code stamp in its first line")
        commit = header["commit"]
        changed = _git(repo, "diff", "--name-only", commit, "HEAD", "--", *PRODUCT, *NOT_PRODUCT)
        ages.append(ReportAge(path.name, commit, tuple(changed.split())))
    return ages


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stale", action="store_true", help="list only the reports whose product changed")
    parser.add_argument("--files", type=int, default=3, help="changed files to name per report (default 3)")
    args = parser.parse_args(argv)
    ages = report_ages()
    for age in ages:
        if args.stale and not age.stale:
            continue
        if not age.stale:
            print(f"{age.report}: current (commit {age.commit})")
            continue
        named = ", ".join(age.changed[: args.files]) + (", ..." if len(age.changed) > args.files else "")
        print(f"{age.report}: {len(age.changed)} product files changed since {age.commit}: {named}")
    print(f"{sum(a.stale for a in ages)} of {len(ages)} reports measured older product code than HEAD")
    return 0


if __name__ == "__main__":
    run_main(main)
