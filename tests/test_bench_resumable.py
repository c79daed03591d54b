"""The resume store of the seeded benchmarks: finished units survive a kill, and only for the
same measurement."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import pytest
from test_bench_found_vs_baseline import _seed
from test_bench_search_efficiency import EVENTS

from hpsearch.benchmarks.efficiency_report import Event
from hpsearch.benchmarks.found_vs_baseline import SeedResult
from hpsearch.benchmarks.resumable import ResumeStore, identity, needs_own_ray
from hpsearch.benchmarks.search_efficiency import Setting
from hpsearch.plumbing.errors import UsageError

IDENTITY = {"task": "mnist", "setting": {"wall_s": 240}, "commit": "abc", "measurement_version": 1}


def test_units_are_kept_for_a_resume_of_the_same_measurement(tmp_path: Path):
    out = tmp_path / "report.md"
    ResumeStore(out, IDENTITY, resume=False).add("ours-seed3", [asdict(e) for e in EVENTS])
    again = ResumeStore(out, IDENTITY, resume=True)
    kept = [Event(**e) for e in again.get("ours-seed3")]
    assert repr(kept) == repr(EVENTS)  # repr: NaN val_acc of START events compares equal this way
    assert math.isnan(kept[0].val_acc)
    assert again.get("ours-seed4") is None and again.get("random-seed3") is None


def test_a_seed_result_round_trips_through_the_store(tmp_path: Path):
    out = tmp_path / "report.md"
    ResumeStore(out, IDENTITY, resume=False).add("seed3", asdict(_seed(3, 0.96, 0.93)))
    saved = ResumeStore(out, IDENTITY, resume=True).get("seed3")
    assert SeedResult.from_dict(saved) == _seed(3, 0.96, 0.93)


def test_units_are_dropped_without_resume(tmp_path: Path):
    out = tmp_path / "report.md"
    ResumeStore(out, IDENTITY, resume=False).add("ours-seed3", [])
    assert ResumeStore(out, IDENTITY, resume=False).get("ours-seed3") is None


def test_resume_refuses_units_of_another_measurement_and_keeps_them(tmp_path: Path):
    out = tmp_path / "report.md"
    ResumeStore(out, IDENTITY, resume=False).add("ours-seed3", [1])
    with pytest.raises(UsageError, match="--resume: .* another task, setting or code"):
        ResumeStore(out, {**IDENTITY, "measurement_version": 2}, resume=True)
    # The refusal leaves the saved units for a resume with the right code.
    assert ResumeStore(out, IDENTITY, resume=True).get("ours-seed3") == [1]


def test_clear_removes_the_store(tmp_path: Path):
    done = ResumeStore(tmp_path / "report.md", IDENTITY, resume=False)
    done.add("seed0", {"x": 1})
    done.clear()
    assert not done.dir.exists()


def test_identity_names_task_setting_and_measurement():
    setting = Setting(train_per_class=1, val_per_class=1, max_epochs=1, trial_budget_s=1, wall_s=60, trials=2)
    made = identity("font", setting, 7)
    assert made["task"] == "font" and made["setting"]["wall_s"] == 60 and made["measurement_version"] == 7
    assert made["commit"]  # a commit, or "unknown" outside a checkout


def test_a_running_ray_of_another_size_is_refused(ray_session):
    # The test session's Ray has 2 CPUs: a benchmark that needs 2 workers uses it, one of 3 refuses.
    assert needs_own_ray(2) is False
    with pytest.raises(UsageError, match="has 2.0 CPUs; this needs 3"):
        needs_own_ray(3)
