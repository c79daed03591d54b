"""The leaderboard as text: the same header, tables and figures written as Markdown and as HTML.

The HTML is one self-contained file (inline CSS, figures as base64 PNG) so it can be mailed,
attached to an MLflow run or opened offline.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from hpsearch.reports.figures import Plot
from hpsearch.reports.runs import PARAM, SearchRuns

# Short headers for long knob names, so a table of a dozen knobs fits a 1,200 px page; a table
# says what each one it shows stands for.
SHORT = {
    "optimizer": "opt",
    "batch_size": "batch",
    "weight_decay": "wd",
    "label_smoothing": "smooth",
    "momentum": "mom",
    "schedule": "sched",
    "step_size": "step",
    "augment": "aug",
    "stem_channels": "stem",
    "stem_kernel": "stem_k",
    "width_mult": "width",
    "blocks_per_stage": "blocks",
    "fc_width": "fc",
    "leaky_slope": "leak",
    "conv1_channels": "conv1",
    "conv1_kernel": "conv1_k",
    "mid_channels": "mid",
    "last_channels": "last",
}
ERROR_CHARS = 100  # a failed trial's error in its table; the whole line is on its MLflow run
AT_CHANCE = "at chance"
_NUMERIC = re.compile(r"[-+]?[0-9][0-9.e+\-/]*")  # a number (or best/last epoch): right-aligned


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    baseline_rows: set[int] = field(default_factory=set)  # indices of rows to mark as the seed's
    chance_rows: set[int] = field(default_factory=set)  # indices of rows that scored at chance
    notes: list[str] = field(default_factory=list)  # lines above the table: the knobs its rows share
    empty: str = "none"  # said instead of an empty table


@dataclass(frozen=True)
class Page:
    title: str
    generated_by: str  # the command line, shown first
    facts: list[tuple[str, str]]  # (label, text) lines under the title
    tables: list[Table]
    plots: list[Plot]


def leaderboard_tables(runs: SearchRuns, top: int) -> list[Table]:
    """Finished trials ranked (top `top`, plus the baseline wherever it ranks), pruned, then the rest.

    A table has a column only for the knobs that differ among its rows; the knobs every trial of
    the search shares are said once above the ranking, and those a table's rows share besides
    above that table.
    """
    search_wide = _shared(runs.trials, runs.params())
    finished = runs.finished()
    shown = finished.head(top)
    rest = finished.iloc[top:]
    shown = pd.concat([shown, rest[rest["baseline"]]])  # the seed's row, even when it ranks low
    same = "same in every trial: " + (_knob_list(search_wide) or "no knob")
    ranked = _table(
        f"Ranking of the {len(finished)} trials trained to their own end (completed or out of budget)"
        + (f", top {top} shown" if len(finished) > top else ""),
        runs,
        shown,
        search_wide,
        ranks=True,
        empty="no trial has trained to its own end yet",
        notes=[same] if len(runs.trials) else [],
    )
    pruned = _table(
        "Stopped early by ASHA (pruned): not comparable with the ranking above",
        runs,
        runs.pruned(),
        search_wide,
    )
    stopped = _table("Diverged, failed or never ended", runs, runs.stopped(), search_wide, error=True)
    return [ranked, pruned, stopped]


def _table(
    title: str,
    runs: SearchRuns,
    frame: pd.DataFrame,
    search_wide: dict[str, str],
    *,
    ranks: bool = False,
    error: bool = False,
    empty: str = "none",
    notes: list[str] | None = None,
) -> Table:
    notes = list(notes or [])
    knobs = [p for p in runs.params() if p not in search_wide and frame[p].fillna("").nunique() > 1]
    also = {k: v for k, v in _shared(frame, runs.params()).items() if k not in search_wide and v}
    if len(frame) == 1 and also:
        notes.append(f"its knobs, besides those every trial shares: {_knob_list(also)}")
    elif len(frame) and also:
        notes.append(f"also the same in the {len(frame)} trials below: {_knob_list(also)}")
    legend = [(SHORT[name], name) for name in (p.removeprefix(PARAM) for p in knobs) if name in SHORT]
    if len(frame) and legend:
        notes.append("short names: " + ", ".join(f"{short} = {name}" for short, name in legend))
    at_chance = runs.at_chance(frame)
    columns = (["#"] if ranks else []) + [
        "trial",
        "fate",
        f"best {runs.metric}",
        f"best/last {runs.report_unit}",
        "time s",
    ]
    columns += (["error"] if error else []) + [_name(p) for p in knobs]
    rows = []
    for i, row in frame.iterrows():
        cells = [str(i + 1)] if ranks else []
        cells += _cells(row, bool(at_chance[i]))
        cells += [_clip(row["error"])] if error else []
        rows.append(cells + [_param(row.get(p)) for p in knobs])
    return Table(title, columns, rows, _where(frame["baseline"]), _where(at_chance), notes, empty)


def markdown(page: Page) -> str:
    lines = [f"_Generated by `{page.generated_by}`; do not edit._", "", f"# {page.title}", ""]
    lines += [f"- **{label}**: {text}" for label, text in page.facts]
    for table in page.tables:
        lines += ["", f"## {table.title}", ""]
        lines += [line for note in table.notes for line in (f"_{note}_", "")]
        if not table.rows:
            lines.append(f"_{table.empty}_")
            continue
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "---|" * len(table.columns))
        for i, row in enumerate(table.rows):
            cells = [c.replace("|", "\\|") for c in row]
            if i in table.baseline_rows:
                cells = [f"**{c}**" if c else c for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Figures"]
    for plot in page.plots:
        shown = f"![{plot.title}]({plot.path.name})" if plot.path else f"_Not drawn: {plot.note}._"
        lines += ["", f"### {plot.title}", "", shown]
    return "\n".join(lines).rstrip() + "\n"


def html_page(page: Page) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(page.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<p class="generated">Generated by <code>{e(page.generated_by)}</code>; do not edit.</p>',
        f"<h1>{e(page.title)}</h1>",
        "<ul>" + "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in page.facts) + "</ul>",
    ]
    for table in page.tables:
        out.append(f"<h2>{e(table.title)}</h2>")
        out += [f'<p class="note">{e(note)}</p>' for note in table.notes]
        if not table.rows:
            out.append(f"<p><i>{e(table.empty)}</i></p>")
            continue
        # Wide tables scroll inside their box rather than overflow the page.
        out.append(
            '<div class="scroll"><table><thead><tr>'
            + "".join(f"<th>{e(c)}</th>" for c in table.columns)
            + "</tr></thead>"
        )
        out.append("<tbody>")
        for i, row in enumerate(table.rows):
            marks = [
                m
                for m, rows in (("baseline", table.baseline_rows), ("chance", table.chance_rows))
                if i in rows
            ]
            mark = f' class="{" ".join(marks)}"' if marks else ""
            cells = "".join(
                f'<td class="n">{e(c)}</td>' if _NUMERIC.fullmatch(c) else f"<td>{e(c)}</td>" for c in row
            )
            out.append(f"<tr{mark}>{cells}</tr>")
        out.append("</tbody></table></div>")
    out.append("<h2>Figures</h2>")
    for plot in page.plots:
        if plot.path is None:
            out.append(f"<h3>{e(plot.title)}</h3><p><i>Not drawn: {e(plot.note)}.</i></p>")
            continue
        data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
        out.append(
            f'<figure><img alt="{e(plot.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(plot.title)}</figcaption></figure>"
        )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _cells(row: pd.Series, at_chance: bool) -> list[str]:
    trial = f"{row['trial_id']} (baseline)" if row["baseline"] else str(row["trial_id"])
    epochs = f"{_number(row['best_epoch'], 'd')}/{_number(row['epochs_run'], 'd')}"
    return [
        trial,
        f"{row['fate']}, {AT_CHANCE}" if at_chance else row["fate"],
        _number(row["best"], ".4f"),
        "" if epochs == "/" else epochs,
        _number(row["train_time_s"], ".0f"),
    ]


def _where(flags: pd.Series) -> set[int]:
    """The row positions (as the table shows them) where `flags` is true."""
    return {n for n, flag in enumerate(flags) if flag}


def _shared(frame: pd.DataFrame, params: list[str]) -> dict[str, str]:
    """The knobs with one value in every row of `frame` (as shown), by param column."""
    if frame.empty:
        return {}
    return {p: _param(frame[p].iloc[0]) for p in params if frame[p].fillna("").nunique() == 1}


def _knob_list(knobs: dict[str, str]) -> str:
    return ", ".join(f"{p.removeprefix(PARAM)} {value}" for p, value in knobs.items() if value)


def _name(param: str) -> str:
    name = param.removeprefix(PARAM)
    return SHORT.get(name, name)


def _clip(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def _number(value, spec: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(int(value) if spec == "d" else float(value), spec)


def _param(value) -> str:
    # MLflow keeps params as strings: show floats short (0.00123456 -> 0.00123), the rest as logged.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value)
    try:
        int(text)
        return text
    except ValueError:
        pass
    try:
        return format(float(text), ".3g")
    except ValueError:
        return text


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
.generated { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; white-space: nowrap; }
td.n { text-align: right; }
th { background: #f0f0f0; }
tr.baseline td { background: #fff4cc; font-weight: bold; }
tr.chance td { color: #a33; }
.scroll { overflow-x: auto; max-width: 100%; }
.note { color: #555; font-size: 0.85em; margin: 0.3em 0; }
figure { margin: 1em 0; }
img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
"""
