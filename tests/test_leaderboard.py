"""The leaderboard report, made from a real (sqlite) MLflow store laid out as a search writes it.

The store follows docs/tracking-schema.md: a parent run per search, nested trial runs with
their fates, full-config params and per-epoch metrics (step=epoch), and an Optuna journal
study at the path in the parent's `hpsearch.study` tag. No Ray, no training.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState, create_trial

from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.errors import UsageError
from hpsearch.reports.leaderboard import write_report
from hpsearch.reports.rungs import RungCheck, first_rung_against_last
from hpsearch.reports.runs import SearchRuns
from hpsearch.reports.study import param_importances

ROOT = Path(__file__).resolve().parents[1]
SEARCH = "font-20261123-120000"
T0 = 1_795_435_200_000  # 2026-11-23 12:00 UTC, ms: when a search started
DAY = 86_400_000
EPOCH_S = 10
COMMAND = "python reports/leaderboard.py --experiment font"

# trial id, fate, baseline, val_acc per epoch, searched knobs
TRIALS = [
    ("t0000", "completed", True, [0.50, 0.60, 0.65, 0.70], dict(optimizer="adam", lr=1e-3, batch_size=64)),
    # Its best epoch (0.82) is not its last (0.80): ranked by the best.
    ("t0001", "completed", False, [0.55, 0.75, 0.82, 0.80], dict(optimizer="adam", lr=3e-3, batch_size=32)),
    ("t0002", "budget", False, [0.60, 0.78], dict(optimizer="sgd", lr=1e-2, batch_size=128)),
    ("t0003", "pruned", False, [0.40], dict(optimizer="sgd", lr=1e-4, batch_size=256)),
    # Pruned after one lucky epoch: higher than every finished trial, yet never ranked with them.
    ("t0004", "pruned", False, [0.95], dict(optimizer="adam", lr=2e-4, batch_size=32)),
    ("t0005", "completed", False, [0.30, 0.50, 0.60, 0.79], dict(optimizer="adam", lr=5e-4, batch_size=64)),
    ("t0006", "failed", False, [], dict(optimizer="sgd", lr=2e-2, batch_size=256)),
    # Last epoch 0.78 but best 0.81: second, above t0005 (0.79 at its last epoch).
    ("t0007", "completed", False, [0.81, 0.80, 0.79, 0.78], dict(optimizer="adamw", lr=2e-3, batch_size=32)),
    # Trained to its end and learned nothing: 0.025 is within 1.5x the 1/52 chance of the font task.
    (
        "t0008",
        "completed",
        False,
        [0.02, 0.025, 0.021, 0.019],
        dict(optimizer="sgd", lr=3e-2, batch_size=128),
    ),
]
RANKED = ["t0001", "t0007", "t0005", "t0002", "t0000", "t0008"]
CONSTANT = dict(weight_decay=0.0, dropout2=0.3, stem_channels=16)  # same in every trial: not a column
DISTRIBUTIONS = dict(
    optimizer=CategoricalDistribution(["adam", "adamw", "sgd"]),
    lr=FloatDistribution(1e-4, 3e-2, log=True),
    batch_size=CategoricalDistribution([32, 64, 128, 256]),
    momentum=FloatDistribution(0.8, 0.99),
)


def log_search(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    trials: list,
    study: Path | None,
    started: int = T0,
    search_id: str | None = None,
) -> None:
    tags = {
        tag.ROLE: "search",
        tag.SEARCH: name,
        tag.TASK: "font",
        tag.METRIC: "val_acc",
        tag.MODE: "max",
        tag.CODE_VERSION: "abc1234",
        tag.COMMAND: "python search/run.py --space spaces/font.py --quick",
    }
    if study is not None:
        tags[tag.STUDY] = str(study)
    if search_id is not None:
        tags[tag.SEARCH_ID] = search_id
    parent = client.create_run(experiment_id, start_time=started, tags=tags, run_name=name).info.run_id
    # Some of the search settings MlflowTracker logs on the search's run, as it writes them.
    settings = dict(trials=len(trials), trial_budget_s=150.0, max_epochs=4, reports_per_epoch=1)
    client.log_batch(parent, params=[Param(k, str(v)) for k, v in settings.items()])
    for i, (trial_id, fate, baseline, accs, knobs) in enumerate(trials):
        start = started + i * 60_000
        run = client.create_run(
            experiment_id,
            start_time=start,
            run_name=trial_id,
            tags={
                "mlflow.parentRunId": parent,
                tag.ROLE: "trial",
                tag.SEARCH: name,
                tag.TASK: "font",
                tag.TRIAL_ID: trial_id,
                tag.FATE: fate,
                tag.BASELINE: "true" if baseline else "false",
                tag.DEVICE: "cpu",
                **({tag.ERROR: "RuntimeError: out of memory"} if fate == "failed" else {}),
            },
        ).info.run_id
        metrics = []
        for epoch, acc in enumerate(accs, start=1):
            t = start + epoch * EPOCH_S * 1000
            metrics += [
                Metric("val_acc", acc, t, epoch),
                Metric("val_loss", 2.0 - acc, t, epoch),
                Metric("epoch_time_s", EPOCH_S, t, epoch),
                Metric("time_total_s", epoch * EPOCH_S, t, epoch),
            ]
        params = [Param(k, str(v)) for k, v in {**CONSTANT, **knobs, "epochs": 4}.items()]
        client.log_batch(run, metrics=metrics, params=params)
        end = start + max(len(accs), 1) * EPOCH_S * 1000
        client.set_terminated(run, status="FAILED" if fate == "failed" else "FINISHED", end_time=end)
    client.set_terminated(parent, end_time=started + len(trials) * 60_000)


def make_study(path: Path, name: str, trials: list = TRIALS) -> None:
    """The search's Optuna journal: finished trials COMPLETE (last value), pruned PRUNED."""
    path.parent.mkdir(parents=True)
    study = optuna.create_study(
        study_name=name, direction="maximize", storage=JournalStorage(JournalFileBackend(str(path)))
    )
    for _, fate, _, accs, knobs in trials:
        state = {"pruned": TrialState.PRUNED, "failed": TrialState.FAIL}.get(fate, TrialState.COMPLETE)
        value = accs[-1] if state == TrialState.COMPLETE else None
        distributions = {k: DISTRIBUTIONS[k] for k in knobs}
        study.add_trial(create_trial(params=knobs, distributions=distributions, value=value, state=state))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One sqlite store with four experiments: `font` (a full search), `early` (no trial
    finished, no study file), `bare` (a search that logged no trial) and `pruned-baseline`
    (ASHA pruned the baseline, another trial finished)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    study = root / "results" / SEARCH / "optuna_study.journal"
    make_study(study, SEARCH)
    font = client.create_experiment("font", artifact_location=str(root / "artifacts"))
    log_search(client, font, SEARCH, TRIALS, study, started=T0 + DAY)  # the most recent search
    early = client.create_experiment("early", artifact_location=str(root / "artifacts"))
    log_search(client, early, "early-1", [TRIALS[3], TRIALS[6]], root / "results" / "gone.journal")
    bare = client.create_experiment("bare", artifact_location=str(root / "artifacts"))
    log_search(client, bare, "bare-1", [], None, started=T0 - DAY)
    pruned = client.create_experiment("pruned-baseline", artifact_location=str(root / "artifacts"))
    baseline = ("t0000", "pruned", True, [0.40], TRIALS[0][4])
    log_search(client, pruned, "pruned-1", [baseline, TRIALS[1]], None, started=T0 - DAY)
    return uri


@pytest.fixture(scope="module")
def report(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    return write_report(store, "font", SEARCH, out, top=10, command=COMMAND)


def section(md: str, title_start: str) -> str:
    """The text of the `## ` section whose title starts with `title_start`."""
    for part in md.split("\n## ")[1:]:
        if part.startswith(title_start):
            return part
    raise AssertionError(f"no section {title_start!r} in:\n{md}")


def trial_ids(text: str) -> list[str]:
    return re.findall(r"\bt\d{4}\b", text)


def test_write_report_ranks_finished_trials_by_their_best_epoch(report):
    ranking = section(report.read_text(), "Ranking")
    assert trial_ids(ranking) == RANKED
    # t0001's row shows its best epoch's value and epoch (of its 4), not its last; 40 s trained.
    row = next(line for line in ranking.splitlines() if "t0001" in line)
    assert "| t0001 | completed | 0.8200 | 3/4 | 40 |" in row


def test_write_report_lists_pruned_trials_apart_from_the_ranking(report):
    md = report.read_text()
    assert "t0004" not in section(md, "Ranking")  # its 0.95 after one epoch is not comparable
    assert trial_ids(section(md, "Stopped early")) == ["t0004", "t0003"]


def test_write_report_lists_failed_trials_with_their_error(report):
    failed = section(report.read_text(), "Diverged, failed")
    assert trial_ids(failed) == ["t0006"]
    assert "RuntimeError: out of memory" in failed


def test_write_report_marks_the_baseline_row(report):
    rows = [line for line in section(report.read_text(), "Ranking").splitlines() if line.startswith("|")]
    assert [trial_ids(row) for row in rows if "baseline" in row] == [["t0000"]]
    assert '<tr class="baseline">' in report.with_suffix(".html").read_text()


def test_write_report_keeps_the_baseline_row_below_the_top(store, tmp_path):
    md = write_report(store, "font", SEARCH, tmp_path, top=2, command=COMMAND).read_text()
    ranking = section(md, "Ranking")
    assert trial_ids(ranking) == ["t0001", "t0007", "t0000"]
    assert next(line for line in ranking.splitlines() if "t0000" in line).startswith("| **5** |")


def columns(table: str) -> list[str]:
    """The header cells of the one Markdown table in a section."""
    header = next(line for line in table.splitlines() if line.startswith("| "))
    return [c.strip() for c in header.strip("|").split("|")]


def test_write_report_shows_only_the_hyperparameters_that_varied(report):
    ranking = section(report.read_text(), "Ranking")
    head = ["#", "trial", "fate", "best val_acc", "best/last epoch", "time s"]
    # The three searched knobs, under short names; none of the knobs every trial shares.
    assert columns(ranking)[:6] == head and sorted(columns(ranking)[6:]) == ["batch", "lr", "opt"]
    # The knobs no trial changed are said once, with their value, above the table.
    same = next(line for line in ranking.splitlines() if line.startswith("_same in every trial: "))
    for knob in ("weight_decay 0", "dropout2 0.3", "stem_channels 16", "epochs 4"):
        assert knob in same
    assert "opt = optimizer" in ranking and "batch = batch_size" in ranking


def test_write_report_drops_a_knob_that_is_the_same_in_the_shown_trials(store, tmp_path):
    # Top 1 shows t0001 and the baseline t0000: both Adam, with different lr and batch sizes.
    md = write_report(store, "font", SEARCH, tmp_path, top=1, command=COMMAND).read_text()
    ranking = section(md, "Ranking")
    assert trial_ids(ranking) == ["t0001", "t0000"]
    assert sorted(columns(ranking)[6:]) == ["batch", "lr"]
    assert "_also the same in the 2 trials below: optimizer adam_" in ranking
    # The pruned table's two trials differ in all three knobs: each is a column there.
    assert sorted(columns(section(md, "Stopped early"))[5:]) == ["batch", "lr", "opt"]


def test_write_report_marks_the_trials_at_chance(report):
    md = report.read_text()
    rows = [line for line in section(md, "Ranking").splitlines() if line.startswith("| ")]
    assert [trial_ids(row) for row in rows if "at chance" in row] == [["t0008"]]
    assert "| t0008 | completed, at chance | 0.0250 |" in md
    # 1.5 x 1/52 = 0.0288; the pruned t0003 (0.40) and the failed t0006 are not judged.
    assert "- **at chance**: 1 of the 6 finished trials (best val_acc at most 0.0288; chance is 1/52" in md
    assert '<tr class="chance">' in report.with_suffix(".html").read_text()


def test_write_report_compares_the_best_with_the_baseline_at_equal_footing(report):
    md = report.read_text()
    assert (
        "- **best**: trial t0001: val_acc 0.8200 at epoch 3; baseline t0000 0.7000"
        " under the same 150 s budget and 4-epoch horizon, +0.1200\n"
    ) in md
    assert "every trial, the baseline too, trained under the same 150 s budget and 4-epoch horizon" in md


def test_write_report_says_when_the_baseline_was_pruned(store, tmp_path):
    md = write_report(store, "pruned-baseline", None, tmp_path, command=COMMAND).read_text()
    best = next(line for line in md.splitlines() if line.startswith("- **best**"))
    assert best.endswith(
        "; the baseline t0000 was pruned by ASHA, so there is no finished baseline to compare with"
    )
    assert "+" not in best  # no gain computed against a baseline that never finished


def test_write_report_measures_the_first_rung_against_the_end(report):
    # The 6 finished trials with reports past epoch 1. Ranks at epoch 1: t0000 3, t0001 4,
    # t0002 5, t0005 2, t0007 6, t0008 1; at their last epoch: 2, 6, 3.5, 5, 3.5, 1 (t0002 and
    # t0007 tie at 0.78). Pearson on the ranks: 6 / sqrt(17.5 * 17) = +0.35.
    assert (
        "- **first rung vs the end**: epoch 1 against each trial's last epoch:"
        " Spearman rho +0.35 over 6 trials trained to their end\n"
    ) in report.read_text()


def test_write_report_says_when_the_first_rung_cannot_be_measured(store, tmp_path):
    md = write_report(store, "pruned-baseline", None, tmp_path, command=COMMAND).read_text()
    # One finished trial (t0001): a rank correlation needs at least 3.
    assert "- **first rung vs the end**: epoch 1 against each trial's last epoch: not measured" in md


def _runs_with(histories: list[list[float]], grace: int = 1) -> SearchRuns:
    parent = SimpleNamespace(data=SimpleNamespace(params={"grace_period": str(grace)}, tags={}))
    trials = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(len(histories))],
            "fate": ["completed"] * len(histories),
            "best": [max(h) for h in histories],
            "train_time_s": [1.0] * len(histories),
        }
    )
    series = {f"r{i}": pd.Series(h, index=range(1, len(h) + 1)) for i, h in enumerate(histories)}
    return SearchRuns("e", "s", "val_acc", "max", parent, trials, series)


def test_first_rung_against_last_reads_the_grace_periods_report():
    # At report 1 the order is reversed at the end; at report 2 it is the end's order.
    curves = [[0.1, 0.5, 0.6], [0.2, 0.4, 0.5], [0.3, 0.3, 0.4], [0.4, 0.2, 0.3]]
    assert first_rung_against_last(_runs_with(curves, grace=1)) == RungCheck(1, 4, -1.0)
    assert first_rung_against_last(_runs_with(curves, grace=2)) == RungCheck(2, 4, 1.0)
    # A trial that ended at the rung says nothing about what came after it.
    assert first_rung_against_last(_runs_with([*curves, [0.9]], grace=1)).trials == 4
    assert first_rung_against_last(_runs_with(curves[:2])).rho is None


def test_write_report_wide_tables_scroll_in_the_html(report):
    html = report.with_suffix(".html").read_text()
    assert html.count('<div class="scroll"><table>') == 3  # ranking, pruned, failed
    assert ".scroll { overflow-x: auto;" in html


def test_write_report_puts_the_command_at_the_top(report):
    md_first = report.read_text().splitlines()[0]
    assert COMMAND in md_first and "do not edit" in md_first
    html = report.with_suffix(".html").read_text()
    body = html[html.index("<body>") :]
    assert body.index(COMMAND) < body.index("<h1>")


def test_write_report_html_is_self_contained(report):
    html = report.with_suffix(".html").read_text()
    assert 'src="http' not in html and 'href="http' not in html
    assert "<link" not in html and "<script" not in html
    # All four figures drawn (the study has enough completed trials) and embedded.
    assert html.count('src="data:image/png;base64,') == 4


def test_write_report_writes_the_figures(report):
    pngs = sorted(p.name for p in report.parent.glob("*.png"))
    assert pngs == ["best_so_far.png", "learning_curves.png", "metric_vs_time.png", "param_importance.png"]
    for name in pngs:
        data = (report.parent / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    # Its importance from the study's six COMPLETE trials, those trained to their own end.
    assert (
        "- **parameter importance**: fANOVA from 6 trials trained to their own end"
        " (pruned and failed left out: 2 pruned, 1 failed): "
    ) in report.read_text()


def test_two_searches_with_one_name_are_two_searches(tmp_path):
    # The same --name in two results folders: the report of the latest holds its own trials only.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    font = client.create_experiment("font", artifact_location=str(tmp_path / "artifacts"))
    log_search(client, font, "same", TRIALS[:3], tmp_path / "a" / "optuna_study.journal")
    later = [("t0100", "completed", False, [0.30, 0.31], TRIALS[1][4])]
    log_search(client, font, "same", later, tmp_path / "b" / "optuna_study.journal", started=T0 + DAY)
    md = write_report(uri, "font", "same", tmp_path / "report", top=10, command=COMMAND).read_text()
    assert "t0100" in md and not {"t0000", "t0001", "t0002"} & set(trial_ids(md))


def test_a_search_run_again_in_its_deleted_folder_is_another_search(tmp_path):
    # The same --name and the same folder, so the same study path; their ids tell them apart.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    font = client.create_experiment("font", artifact_location=str(tmp_path / "artifacts"))
    study = tmp_path / "a" / "optuna_study.journal"
    log_search(client, font, "same", TRIALS[:3], study, search_id="first")
    later = [("t0100", "completed", False, [0.30, 0.31], TRIALS[1][4])]
    log_search(client, font, "same", later, study, started=T0 + DAY, search_id="second")
    md = write_report(uri, "font", "same", tmp_path / "report", top=10, command=COMMAND).read_text()
    assert "t0100" in md and not {"t0000", "t0001", "t0002"} & set(trial_ids(md))


def test_write_report_without_finished_trials(store, tmp_path):
    md = write_report(store, "early", "early-1", tmp_path, command=COMMAND).read_text()
    assert "no trial has trained to its own end yet" in section(md, "Ranking")
    assert trial_ids(section(md, "Stopped early")) == ["t0003"]
    assert "is missing" in md  # the study file is gone: importance skipped with a note
    assert (tmp_path / "leaderboard.html").stat().st_size > 0


def test_write_report_for_a_search_without_trials(store, tmp_path):
    md = write_report(store, "bare", None, tmp_path, command=COMMAND).read_text()
    assert "bare-1" in md
    assert "no Optuna study recorded" in md
    assert not list(tmp_path.glob("*.png"))  # nothing to draw, each figure says why instead


@pytest.mark.parametrize(
    ("experiment", "search", "message"),
    [("nope", SEARCH, "no experiment 'nope'"), ("font", "font-nope", "no search 'font-nope'")],
)
def test_write_report_unknown_experiment_or_search(store, tmp_path, experiment, search, message):
    with pytest.raises(UsageError, match=message):
        write_report(store, experiment, search, tmp_path, command=COMMAND)


def test_write_report_missing_local_store_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no MLflow store"):
        write_report(f"sqlite:///{tmp_path / 'none.db'}", "font", None, tmp_path, command=COMMAND)
    assert not (tmp_path / "none.db").exists()  # not silently created empty


def test_param_importances_needs_enough_completed_trials(tmp_path):
    path = tmp_path / "study" / "optuna_study.journal"
    make_study(path, "s", TRIALS[:3])  # the searcher tells Optuna COMPLETE for `budget` too
    note = param_importances(str(path), "s").note
    assert note.startswith("only 3 trial(s) trained to their own end (pruned and failed do not count)")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "reports/leaderboard.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_the_report(store, tmp_path):
    # No --experiment, no --search: the most recent search in any experiment, the font one.
    done = run_cli("--tracking-uri", store, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    md = (tmp_path / "leaderboard.md").read_text()
    assert md.startswith(f"_Generated by `python reports/leaderboard.py --tracking-uri {store}")
    assert f"# Leaderboard: {SEARCH}" in md
    assert trial_ids(section(md, "Ranking")) == RANKED


def test_cli_unknown_experiment_is_one_error_line(store):
    done = run_cli("--tracking-uri", store, "--experiment", "nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: no experiment 'nope'")


def test_param_importances_count_only_trials_trained_to_their_end(tmp_path):
    finished = [t for t in TRIALS if t[1] in ("completed", "budget")]
    make_study(tmp_path / "finished" / "study.journal", "s", finished)
    # The same study with the pruned and failed trials beside them: they say nothing about how
    # their configs do at the end of the horizon, so the importances must not change.
    make_study(tmp_path / "all" / "study.journal", "s", TRIALS)
    alone = param_importances(str(tmp_path / "finished" / "study.journal"), "s")
    among_all = param_importances(str(tmp_path / "all" / "study.journal"), "s")
    assert among_all.completed_trials == alone.completed_trials == len(finished) == 6
    assert among_all.values == pytest.approx(alone.values)
    assert among_all.left_out == {"pruned": 2, "failed": 1} and alone.left_out == {}
    assert (
        among_all.basis
        == "6 trials trained to their own end (pruned and failed left out: 2 pruned, 1 failed)"
    )


def test_param_importances_keep_a_knob_only_pruned_trials_lack(tmp_path):
    # Every finished trial suggested momentum; the pruned one did not: momentum still counts.
    with_momentum = [(*t[:4], {**t[4], "momentum": 0.8 + 0.02 * i}) for i, t in enumerate(TRIALS)]
    trials = [t if t[1] == "pruned" else with_momentum[i] for i, t in enumerate(TRIALS)]
    path = tmp_path / "study" / "study.journal"
    make_study(path, "s", trials)
    assert set(param_importances(str(path), "s").values) == {"optimizer", "lr", "batch_size", "momentum"}
