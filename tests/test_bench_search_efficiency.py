"""The search-efficiency benchmark: its arithmetic on hand-made events, and a smoke run of all four."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hpsearch.benchmarks.efficiency_report import (
    END,
    EPOCH,
    START,
    Event,
    best_so_far,
    fmt_seconds,
    median_time,
    read_events,
    tally,
    time_to_target,
    write_events,
)
from hpsearch.benchmarks.search_efficiency import LABELS, TASKS, Setting, main, startup_line
from hpsearch.plumbing.cli import run_main

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Two trials: 0 rises to 0.96 and finishes; 1 reaches 0.98 at 50 s, then is cut by the wall.
EVENTS = [
    Event(0, START, 1.0),
    Event(0, EPOCH, 10.0, epoch=1, val_acc=0.90),
    Event(1, START, 12.0),
    Event(0, EPOCH, 20.0, epoch=2, val_acc=0.96),
    Event(0, END, 20.5, fate="completed"),
    Event(1, EPOCH, 30.0, epoch=1, val_acc=0.50),
    Event(1, EPOCH, 50.0, epoch=2, val_acc=0.98),
    Event(1, END, 61.0, fate="pruned"),  # after the 60 s wall: Tune's stop of a cut trial
]


def test_best_so_far_keeps_improvements_within_the_wall():
    assert best_so_far(EVENTS, wall_s=60) == [(10.0, 0.90), (20.0, 0.96), (50.0, 0.98)]
    # What comes after the wall budget never counts.
    assert best_so_far(EVENTS, wall_s=40) == [(10.0, 0.90), (20.0, 0.96)]


def test_best_so_far_skips_diverged_epochs():
    events = [Event(0, EPOCH, 5.0, val_acc=math.nan), Event(0, EPOCH, 9.0, val_acc=0.2)]
    assert best_so_far(events, wall_s=60) == [(9.0, 0.2)]


def test_time_to_target_is_the_first_time_the_best_reaches_it():
    curve = best_so_far(EVENTS, wall_s=60)
    assert time_to_target(curve, 0.95) == 20.0
    assert time_to_target(curve, 0.98) == 50.0  # reaching it exactly counts


def test_time_to_target_never_reached_reads_not_reached():
    curve = best_so_far(EVENTS, wall_s=40)
    assert time_to_target(curve, 0.97) is None
    assert fmt_seconds(time_to_target(curve, 0.97)) == "not reached"
    assert time_to_target([], 0.5) is None


def test_median_time_counts_not_reached_as_never():
    assert median_time([10.0, None, 30.0]) == "30 s"
    assert median_time([10.0, None, None]) == "not reached"


def test_tally_counts_trials_cut_by_the_wall():
    t = tally(EVENTS, wall_s=60, target=0.97)
    assert (t.best, t.to_target_s, t.first_result_s) == (0.98, 50.0, 10.0)
    # Trial 1's end came after the wall: it was still running, so it is cut, not pruned.
    assert (t.started, t.finished, t.pruned, t.cut, t.failed) == (2, 1, 0, 1, 0)


def test_tally_with_no_result_has_no_best():
    t = tally([Event(0, START, 3.0)], wall_s=60, target=0.97)
    assert math.isnan(t.best) and t.to_target_s is None and t.cut == 1


def test_events_round_trip_through_csv(tmp_path):
    runs = {("ours", 0): EVENTS, ("optuna", 1): EVENTS[:2]}
    write_events(tmp_path / "events.csv", runs)
    back = read_events(tmp_path / "events.csv")
    # Compared as text: an epoch-less event's val_acc is nan, and nan != nan.
    assert repr(back[("optuna", 1)]) == repr(EVENTS[:2])
    assert repr(sorted(back[("ours", 0)], key=lambda e: e.t_s)) == repr(EVENTS)


def test_search_efficiency_without_mnist_is_one_error_line(tmp_path, capsys):
    # A fresh cache too: a copy unpacked there by an earlier run would be found and used.
    argv = ["--smoke", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    argv += ["--out", str(tmp_path / "r.md")]
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: MNIST not found under") and "\n" not in err
    assert not (tmp_path / "r.md").exists()


def test_startup_line_gives_the_fewest_trials_against_the_start_up():
    setting = Setting(
        train_per_class=1, val_per_class=1, max_epochs=1, trial_budget_s=1, wall_s=60, trials=24
    )
    assert setting.startup_trials == 6  # SearchSettings' rule: a quarter of the cap, 3..10
    # Two trials in seed 0 (the hand-made events), one in seed 1; the random method's don't count.
    runs = {("ours", 0): EVENTS, ("ours", 1): EVENTS[:2], ("random", 0): EVENTS * 9}
    line = startup_line(runs, setting)
    assert "1 to 2 per seed (mean 1.5)" in line and "6 random start-up trials: at least 0.2x" in line


def test_every_task_leaves_room_for_three_times_the_start_up():
    # The wall budget must fit 3x the start-up trials on 2 workers, if trials ran their whole budget.
    for name, task in TASKS.items():
        s = task.full
        assert 2 * s.wall_s / s.trial_budget_s >= 3 * s.startup_trials, name


@pytest.mark.parametrize("flag", ["--wall-budget", "--trial-budget", "--max-epochs", "--trials"])
def test_a_nonpositive_setting_is_one_error_line(flag, tmp_path, capsys):
    argv = ["--smoke", flag, "0", "--out", str(tmp_path / "r.md")]
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {flag} must be positive, got 0"


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="real MNIST is not in ../shared/data"
)
def test_search_efficiency_smoke_writes_report_figure_and_events(ray_session, tmp_path):
    out = tmp_path / "report" / "search_efficiency.md"
    argv = [
        "--smoke",
        "--data-dir",
        str(SHARED_DATA),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
    ]
    assert main(argv) == 0

    png, raw = out.with_suffix(".png"), out.with_name("search_efficiency_events.csv")
    assert png.stat().st_size > 10_000  # a drawn figure, not an empty canvas
    text = out.read_text()
    assert "Machine:" in text and "python benchmarks/search_efficiency.py --smoke" in text
    assert "SMOKE RUN" in text
    runs = read_events(raw)
    for method, label in LABELS.items():
        assert f"| 0 | {label} |" in text  # its row in the per-seed table
        events = runs.get((method, 0), [])
        # Every method ran a trial that trained on real data and reported. The raw file keeps
        # events past the wall too: on a loaded machine the first Ray search in a fresh Ray
        # session may report only then, and the smoke run tests the plumbing, not the speed.
        assert any(e.kind == START for e in events), method
        assert any(e.kind == EPOCH and 0 <= e.val_acc <= 1 for e in events), method
    # No search: one run of the seed's config that ends on its own (the wall budget is its budget).
    baseline = runs[("baseline", 0)]
    assert {e.trial for e in baseline} == {0}
    assert [e.fate for e in baseline if e.kind == END] in (["completed"], ["budget"])


@pytest.mark.slow
def test_search_efficiency_font_smoke_runs_all_four_on_generated_fonts(ray_session, tmp_path):
    out = tmp_path / "font.md"
    argv = ["--task", "font", "--smoke", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert main(argv) == 0
    text = out.read_text()
    assert "Search efficiency on font" in text and "split by font family" in text
    assert "Trials our search started within the wall budget" in text
    runs = read_events(out.with_name("font_events.csv"))
    for method in LABELS:
        assert any(e.kind == EPOCH and 0 <= e.val_acc <= 1 for e in runs[(method, 0)]), method
    assert not out.with_name("font_done").exists()  # the report holds every run now
