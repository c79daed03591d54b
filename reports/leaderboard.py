"""Write a search's leaderboard (Markdown, self-contained HTML, PNG figures) from MLflow alone.

    python reports/leaderboard.py                          # the most recent search anywhere
    python reports/leaderboard.py --experiment font        # the most recent font search
    python reports/leaderboard.py --experiment font --name font-20261123-120000 --top 20

Trials are ranked by their best epoch's metric, and only among those trained to their own end
(completed or out of budget); ASHA-pruned trials are listed apart. The best is compared with the
baseline at equal footing (every trial has the same per-trial budget and horizon); trials that
scored at chance are marked; parameter importance counts only trials trained to their own end.
Default output:
reports/out/<search>/. search/run.py calls `write_report` at the end of every search.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.cli import ArgumentParser, run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.plumbing.servers import redact
from hpsearch.reports.chance import chance_ceiling
from hpsearch.reports.figures import make_figures
from hpsearch.reports.render import AT_CHANCE, Page, html_page, leaderboard_tables, markdown
from hpsearch.reports.rungs import rung_line
from hpsearch.reports.runs import (
    FINISHED_FATES,
    PRUNED_FATES,
    SearchRuns,
    add_search_arguments,
    latest_search,
    load_search,
    open_client,
)
from hpsearch.reports.study import Importances, param_importances

DEFAULT_OUT = Path("reports/out")


def write_report(
    tracking_uri: str | None,
    experiment: str | None,
    search: str | None,
    out_dir: Path,
    top: int = 10,
    *,
    command: str,
) -> Path:
    """Write leaderboard.md, leaderboard.html and the figures into `out_dir`; return the .md path.

    `experiment`/`search` None: the most recent search (in that experiment, or anywhere).
    `command` is the command line printed at the top as the report's provenance. A search with
    few, or no, finished trials still gets a report; an unknown experiment or search raises
    UsageError.
    """
    client = open_client(tracking_uri)
    if experiment is None or search is None:
        experiment, search = latest_search(client, experiment, search)
    runs = load_search(client, experiment, search)
    importances = param_importances(runs.parent.data.tags.get(tag.STUDY), search)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = Page(
        title=f"Leaderboard: {search}",
        generated_by=command,
        facts=_facts(runs, importances, client.tracking_uri),
        tables=leaderboard_tables(runs, top),
        plots=make_figures(runs, importances, out_dir),
    )
    md_path = out_dir / "leaderboard.md"
    md_path.write_text(markdown(page))
    (out_dir / "leaderboard.html").write_text(html_page(page))
    return md_path


def _facts(runs: SearchRuns, importances: Importances, tracking_uri: str) -> list[tuple[str, str]]:
    tags = runs.parent.data.tags
    fates = ", ".join(f"{fate} {n}" for fate, n in runs.trials["fate"].value_counts().items())
    ran = f"from {runs.started:%Y-%m-%d %H:%M UTC}"
    last_end = runs.trials["end"].max()
    if not pd.isna(last_end):
        ran += f", {(last_end - runs.started).total_seconds() / 60:.1f} min to its last trial's end"
    footing = _footing(runs.parent.data.params)
    return [
        ("search", f"{runs.search} (task {tags.get(tag.TASK, '?')}, experiment {runs.experiment})"),
        ("tracking store", redact(tracking_uri)),
        ("report made", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("search ran", ran),
        ("ranked by", f"{runs.metric} ({runs.mode}) at each finished trial's best report"),
        (
            "equal footing",
            f"every trial, the baseline too, trained under {footing}"
            if footing
            else "not recorded (the search's run has no trial_budget_s and max_epochs params)",
        ),
        ("trials", f"{len(runs.trials)}" + (f" ({fates})" if fates else "")),
        ("at chance", _chance_line(runs)),
        ("early stopping", tags.get(tag.STOPPING_RULE, "not recorded")),
        ("first rung vs the end", rung_line(runs)),
        ("best", _best_line(runs, footing)),
        ("parameter importance", _importance_line(importances)),
        ("search command", tags.get(tag.COMMAND, "unknown")),
        ("code version", tags.get(tag.CODE_VERSION, "unknown")),
    ]


def _footing(params: dict[str, str]) -> str | None:
    """What every trial of the search trained under, from the search's params, e.g. "the same 150 s
    budget and 4-epoch horizon" (search/settings.py: one per-trial budget and horizon for all)."""
    try:
        budget_s, horizon = float(params["trial_budget_s"]), int(params["max_epochs"])
    except (KeyError, ValueError):
        return None
    return f"the same {budget_s:g} s budget and {horizon}-epoch horizon"


def _best_line(runs: SearchRuns, footing: str | None) -> str:
    finished = runs.finished().dropna(subset=["best"])
    if finished.empty:
        return "no trial has trained to its own end yet"
    best = finished.iloc[0]
    at = f"{runs.report_unit} {best['best_epoch']}"
    line = f"trial {best['trial_id']}: {runs.metric} {best['best']:.4f} at {at}"
    if best["baseline"]:
        return line + " (the baseline itself)"
    baselines = runs.trials[runs.trials["baseline"]]
    if baselines.empty:
        return line + "; no baseline trial in this search to compare with"
    baseline = baselines.iloc[0]
    who = f"the baseline {baseline['trial_id']}"
    if baseline["fate"] in PRUNED_FATES:
        return line + f"; {who} was pruned by ASHA, so there is no finished baseline to compare with"
    if baseline["fate"] not in FINISHED_FATES:
        return line + f"; {who} did not train to its own end ({baseline['fate']}): no comparison"
    if pd.isna(baseline["best"]):
        return line + f"; {who} finished without a {runs.metric}: no comparison"
    under = f"under {footing}" if footing else "(the budget and horizon it trained under were not recorded)"
    gain = best["best"] - baseline["best"]
    return line + f"; baseline {baseline['trial_id']} {baseline['best']:.4f} {under}, {gain:+.4f}"


def _chance_line(runs: SearchRuns) -> str:
    chance = runs.chance
    if chance is None:
        task = runs.parent.data.tags.get(tag.TASK, "?")
        return f"not judged ({runs.metric} of task {task}: not an accuracy of a registered task)"
    finished = runs.finished()
    n = int(runs.at_chance(finished).sum())
    classes = round(1 / chance)
    rule = f"best {runs.metric} at most {chance_ceiling(chance):.4f}; chance is 1/{classes} = {chance:.4f}"
    return f"{n} of the {len(finished)} finished trials ({rule}), marked '{AT_CHANCE}' in the ranking"


def _importance_line(importances: Importances) -> str:
    if not importances.values:
        return f"not computed: {importances.note}"
    values = ", ".join(f"{name} {value:.2f}" for name, value in importances.values.items())
    return f"{importances.evaluator} from {importances.basis}: {values}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(__doc__)
    add_search_arguments(p, DEFAULT_OUT)
    p.add_argument("--top", type=int, default=10, help="trials in the ranking (default 10)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.top < 1:
        raise UsageError("--top must be at least 1")
    experiment, search = args.experiment, args.search
    if experiment is None or search is None:
        # Resolved here, not in write_report, because the default output folder is named after it.
        experiment, search = latest_search(open_client(args.tracking_uri), experiment, search)
    command = shlex.join(["python", "reports/leaderboard.py", *argv])
    path = write_report(
        args.tracking_uri, experiment, search, args.out or DEFAULT_OUT / search, args.top, command=command
    )
    print(f"wrote {path} and {path.with_suffix('.html').name} ({experiment} / {search})")
    return 0


if __name__ == "__main__":
    run_main(main)
