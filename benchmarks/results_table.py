"""The README's results table, generated from the committed benchmark reports.

Every figure in the README's results block is read from a report in reports/benchmarks/ (from
its tables, and from the line where a report states its headline in words); none is typed by
hand. A row says what the report measured (its title), its headline figures, the report, the
machine (its "Machine:" line up to the library versions) and the commit it measured, with the
day it ran.

    python benchmarks/results_table.py           # rewrite the block in README.md
    python benchmarks/results_table.py --check   # exit 1 where README.md's block is not what this writes

A benchmark's headline is a small function below, registered under its script's name; a report
whose script has none is still listed, with its link and no figures.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpsearch.benchmarks.machine import HEADER, REPO, script_of
from hpsearch.plumbing.cli import ArgumentParser, run_main
from hpsearch.plumbing.errors import UsageError

START, END = "<!-- results:start -->", "<!-- results:end -->"
COMMAND = "python benchmarks/results_table.py"
COLUMNS = ("measured", "headline figures", "report", "machine", "commit, run")
NO_HEADLINE = "no headline defined for this benchmark (benchmarks/results_table.py): see the report"


@dataclass(frozen=True)
class Table:
    """A Markdown table of a report: its header cells and its rows' cells."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def column(self, prefix: str) -> int:
        """The index of the first column whose header starts with ``prefix``."""
        for i, name in enumerate(self.columns):
            if name.startswith(prefix):
                return i
        raise KeyError(f"no column starting {prefix!r} (columns: {', '.join(self.columns)})")

    def row(self, prefix: str) -> tuple[str, ...]:
        """The row whose first cell is ``prefix``, else the first whose first cell starts with it."""
        exact = [r for r in self.rows if r[0] == prefix]
        starts = [r for r in self.rows if r[0].startswith(prefix)]
        if not exact + starts:
            raise KeyError(f"no row starting {prefix!r} (rows: {', '.join(r[0] for r in self.rows)})")
        return (exact + starts)[0]

    def cell(self, row: str, column: str) -> str:
        return self.row(row)[self.column(column)]

    def values(self, column: str) -> list[tuple[str, str]]:
        """(first cell, cell of ``column``) for every row."""
        i = self.column(column)
        return [(r[0], r[i]) for r in self.rows]


@dataclass(frozen=True)
class Report:
    """What a committed report says of itself (its first lines) and the tables it holds."""

    path: Path
    command: str
    commit: str
    title: str
    machine: str
    run: str
    text: str
    tables: tuple[Table, ...]

    @property
    def script(self) -> str:
        """The benchmark that wrote it: ``python benchmarks/x.py --flag`` -> ``x``."""
        return script_of(self.command).stem

    def table(self, column: str) -> Table:
        """The first table with a column whose header starts with ``column``."""
        for table in self.tables:
            if any(name.startswith(column) for name in table.columns):
                return table
        raise KeyError(f"no table with a column starting {column!r}")

    def has_table(self, column: str) -> bool:
        return any(name.startswith(column) for t in self.tables for name in t.columns)

    def said(self, pattern: str) -> str:
        """The first group of the first match of ``pattern`` in the report's text."""
        match = re.search(pattern, self.text, re.MULTILINE)
        if match is None:
            raise KeyError(f"no line matching {pattern!r}")
        return match.group(1)


def _cells(line: str) -> tuple[str, ...]:
    return tuple(cell.strip() for cell in line.strip().strip("|").split("|"))


def parse_tables(lines: list[str]) -> tuple[Table, ...]:
    """Every Markdown table: a ``| a | b |`` header, a ``|---|`` line, then ``|`` rows."""
    # Written here: pandas reads no Markdown, and a pipe table is three rules.
    tables, i = [], 0
    while i + 1 < len(lines):
        is_rule = re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip())
        if lines[i].startswith("|") and is_rule:
            columns, rows, i = _cells(lines[i]), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append(Table(columns, tuple(rows)))
        else:
            i += 1
    return tuple(tables)


def _fact(lines: list[str], label: str, path: Path) -> str:
    for line in lines:
        if line.startswith(f"- {label}: "):
            return line.removeprefix(f"- {label}: ").strip()
    raise UsageError(f"{path}: no '- {label}:' line at its top (benchmarks/machine.py writes one)")


def parse_report(path: Path) -> Report:
    """A report as benchmarks/machine.py's ``write_markdown`` lays it out."""
    text = Path(path).read_text()
    lines = text.splitlines()
    header = HEADER.fullmatch(lines[0]) if lines else None
    if header is None:
        raise UsageError(f"{path}: no code stamp in its first line (benchmarks/machine.py writes one)")
    title = next((line.removeprefix("# ") for line in lines if line.startswith("# ")), None)
    if title is None:
        raise UsageError(f"{path}: no '# title' line")
    return Report(
        path=Path(path),
        command=header["command"],
        commit=header["commit"],
        title=title.strip(),
        machine=_fact(lines, "Machine", path),
        run=_fact(lines, "Run", path),
        text=text,
        tables=parse_tables(lines),
    )


# Headlines: one function per benchmark script, in the order the README lists them.
HEADLINES: dict[str, Callable[[Report], str]] = {}


def headline(script: str) -> Callable[[Callable[[Report], str]], Callable[[Report], str]]:
    def register(fn: Callable[[Report], str]) -> Callable[[Report], str]:
        HEADLINES[script] = fn
        return fn

    return register


def number(cell: str) -> float:
    """The leading number of a cell: '2,135 s', '1.52x', '0.29%', '0.308 ± 0.020'."""
    match = re.match(r"[-+]?[\d,]*\.?\d+", cell.strip())
    if match is None:
        raise ValueError(f"no number in {cell!r}")
    return float(match.group().replace(",", ""))


def short(label: str) -> str:
    """A name without its explanation: 'ours (TPE + ...)' -> 'ours', 'no search: x' -> 'no search'."""
    return re.split(r" \(|: ", label, maxsplit=1)[0]


def _mean(cell: str) -> str:
    return cell.split(" ±")[0]


@headline("found_vs_baseline")
def _found_vs_baseline(r: Report) -> str:
    summary = r.table("test_acc")
    found, base = summary.cell("the search's best config", "test_acc"), summary.cell("the seed's", "test_acc")
    ahead = r.said(r"ahead in (\d+ of \d+) seeds")
    difference = r.said(r"found minus baseline: ([^;]+);")
    return (
        f"test_acc: the search's best config {found}, the seed's baseline {base}; "
        f"found - baseline {difference}, ahead in {ahead} seeds"
    )


@headline("search_efficiency")
def _search_efficiency(r: Report) -> str:
    summary = r.table("best val_acc at")
    column = summary.columns[summary.column("best val_acc at")]
    seeds = len(r.said(r"^## Summary over seeds (.+)$").split(","))
    methods = "; ".join(f"{short(m)} {v}" for m, v in summary.values("best val_acc at"))
    return f"{column}, {seeds} seeds: {methods}"


@headline("simulated_search")
def _simulated_search(r: Report) -> str:
    regret = r.table("regret ")
    budgets = [
        c.removeprefix("regret ").removesuffix(" max_t") for c in regret.columns if c.startswith("regret ")
    ]
    ours = regret.row("ours (")
    means = " / ".join(_mean(ours[regret.column(f"regret {b}")]) for b in budgets)
    best = []
    for b in budgets:
        ranks = regret.values(f"rank {b}")
        low = min(number(v) for _, v in ranks)
        best.append(" = ".join(short(m) for m, v in ranks if number(v) == low) + f" ({low:.2f})")
    methods = f"{len(regret.rows)} methods"
    if len(regret.rows) <= 3:
        methods += f" ({', '.join(short(r[0]) for r in regret.rows)})"
    text = (
        f"{methods}; ours' regret {means} at {' / '.join(budgets)} max_t; best mean rank: {' / '.join(best)}"
    )
    if r.has_table("median time to target"):
        target = r.said(r"regret first reached (\S+?);")
        reached = r.table("median time to target").cell("ours (", "median")
        text += f"; ours reaches regret {target} at {reached} max_t (median)"
    if r.has_table("median share of the budget"):
        share = r.table("median share of the budget").cell("ours (", "median share")
        text += f", random search's final regret in {share} of its budget"
    return text


@headline("throughput")
def _throughput(r: Report) -> str:
    ratios = r.table("ratio").values("ratio")
    low = min(ratios, key=lambda tv: number(tv[1]))
    high = max(ratios, key=lambda tv: number(tv[1]))
    mean = r.said(r"^Geometric mean of the ratios \(ours/DataLoader\): (\S+?)\.?$")
    return (
        f"images/s, our loop over the seeds' DataLoader way: {low[1]} ({low[0]}) to {high[1]} ({high[0]}), "
        f"geometric mean {mean}"
    )


@headline("overhead")
def _overhead(r: Report) -> str:
    runs, cost, share = r.table("per trial"), r.table("cost"), r.table("framework share")
    return (
        f"framework per trial {runs.cell('3', 'per trial')} ({runs.cell('4', 'per trial')} with MLflow), "
        f"{cost.cell('one report', 'cost')} per report: "
        f"{share.cell('quick preset, its whole budget', 'framework share')} of a quick trial's budget"
    )


@headline("scaling")
def _scaling(r: Report) -> str:
    table = r.table("speed-up")
    ups = [(s, v) for s, v in table.values("speed-up") if number(v) != 1.0]
    busy = [number(v) for _, v in table.values("workers training")]
    return (
        "trials per hour against 1 worker: "
        + ", ".join(f"{s} {v}" for s, v in ups)
        + f"; workers training {min(busy):.0f}-{max(busy):.0f}% of the time"
    )


@headline("load")
def _load(r: Report) -> str:
    load, counts = r.table("measure"), r.table("expected")
    wrong = [c for c, found, expected in counts.rows if found != expected]
    counted = "every MLflow count as expected" if not wrong else f"MLflow counts off: {', '.join(wrong)}"
    return (
        f"{load.cell('trials', 'value')} trials, {load.cell('most trials at once', 'value')} at once: "
        f"{load.cell('trials per minute', 'value')} trials a minute; {counted}"
    )


@headline("epoch_time")
def _epoch_time(r: Report) -> str:
    epochs = r.table("one epoch").values("one epoch")
    low, high = min(epochs, key=lambda tv: number(tv[1])), max(epochs, key=lambda tv: number(tv[1]))
    return (
        f"one epoch of a seed baseline on its real train split: {low[1]} ({low[0]}) to {high[1]} ({high[0]})"
    )


def _order(report: Report) -> tuple[int, str]:
    scripts = list(HEADLINES)
    return (scripts.index(report.script) if report.script in scripts else len(scripts), report.path.name)


def row(report: Report, readme_dir: Path) -> list[str]:
    make = HEADLINES.get(report.script)
    try:
        figures = make(report) if make else NO_HEADLINE
    except (KeyError, ValueError) as e:  # the report's layout is not what its headline reads
        raise UsageError(f"{report.path}: {e}; update its headline in benchmarks/results_table.py") from e
    link = os.path.relpath(report.path, readme_dir)
    machine = report.machine.split("; Python ")[0]
    return [
        report.title,
        figures,
        f"[{report.path.name}]({link})",
        machine,
        f"{report.commit[:7]}, {report.run[:10]}",
    ]


def results_block(reports_dir: Path, readme_dir: Path) -> str:
    """The README's block, markers included: one row per report, in HEADLINES' order."""
    reports = sorted((parse_report(p) for p in sorted(Path(reports_dir).glob("*.md"))), key=_order)
    if not reports:
        raise UsageError(f"{reports_dir}: no reports (*.md)")
    lines = [
        START,
        f"<!-- Generated by `{COMMAND}` from reports/benchmarks/*.md; do not edit. -->",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for report in reports:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row(report, readme_dir)) + " |")
    return "\n".join(lines + [END])


def current_block(readme: str, path: Path) -> tuple[int, int]:
    """Where the block (markers included) is in the README's text."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise UsageError(f"{path}: no {START} ... {END} block to write the results table into")
    return start, end + len(END)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 where the README's block differs")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md", help="default: the repository's")
    parser.add_argument(
        "--reports", type=Path, default=REPO / "reports/benchmarks", help="the reports' folder"
    )
    args = parser.parse_args(argv)
    if not args.readme.is_file():
        raise UsageError(f"{args.readme}: no such file")
    text = args.readme.read_text()
    start, end = current_block(text, args.readme)
    block = results_block(args.reports, args.readme.resolve().parent)
    if text[start:end] == block:
        print(f"{args.readme}: results table up to date ({block.count(chr(10)) - 4} reports)")
        return 0
    if args.check:
        diff = difflib.unified_diff(
            text[start:end].splitlines(),
            block.splitlines(),
            "README (as committed)",
            "from the reports",
            lineterm="",
        )
        print("\n".join(diff))
        print(f"{args.readme}: results table differs from the reports; run `{COMMAND}`")
        return 1
    args.readme.write_text(text[:start] + block + text[end:])
    print(f"{args.readme}: results table rewritten from {args.reports}")
    return 0


if __name__ == "__main__":
    run_main(main)
