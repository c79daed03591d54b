"""The found-vs-baseline benchmark: its verdict on hand-made seeds, its resume file, and a smoke run."""

from __future__ import annotations

import pytest

from hpsearch.benchmarks.found_vs_baseline import SeedResult, Trained, main, report_body
from hpsearch.benchmarks.search_efficiency import TASKS
from hpsearch.plumbing.cli import run_main
from hpsearch.trainables.data.splits import Split, Splits


def _seed(seed: int, found_test: float, baseline_test: float) -> SeedResult:
    return SeedResult(
        seed=seed,
        trials=12,
        search_val_acc=0.9,
        params={"lr": 0.003, "optimizer": "adamw"},
        found_is_baseline=False,
        found=Trained(0.95, found_test, 20, 20.0, "completed"),
        baseline=Trained(0.94, baseline_test, 15, 15.0, "completed"),
    )


def _data() -> Splits:
    import torch

    split = Split(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    return Splits(split, split, split, ["a", "b"])


def _verdict(results: list[SeedResult]) -> str:
    text = "\n".join(report_body("font", TASKS["font"].full, _data(), results, smoke=False))
    return text.split("Goal, the found beats the baseline by more than that spread: **")[1].split("**")[0]


def test_goal_is_met_only_when_the_mean_lead_exceeds_the_spread_across_seeds():
    # A steady lead of 0.03 over seeds that vary by about 0.01: met.
    steady = [_seed(0, 0.96, 0.93), _seed(1, 0.97, 0.94), _seed(2, 0.95, 0.92)]
    assert _verdict(steady) == "met"
    # The same mean lead, but the found models vary by about 0.05 across seeds: not met.
    noisy = [_seed(0, 0.91, 0.93), _seed(1, 1.00, 0.94), _seed(2, 0.98, 0.92)]
    assert _verdict(noisy) == "not met"
    # Behind the baseline: not met, whatever the spread.
    assert _verdict([_seed(0, 0.90, 0.93), _seed(1, 0.90, 0.93)]) == "not met"


def test_report_counts_the_seeds_the_found_model_leads_and_names_its_config():
    text = "\n".join(
        report_body("font", TASKS["font"].full, _data(), [_seed(0, 0.96, 0.93), _seed(1, 0.90, 0.93)], False)
    )
    assert "ahead in 1 of 2 seeds" in text
    assert (
        "| 0 | 12 | 0.9000 | lr=0.003, optimizer=adamw | 0.9500 / 0.9600 / 20 | 0.9400 / 0.9300 / 15 |"
        in text
    )


def test_negative_seed_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main(["--seeds", "-1"]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --seeds must be non-negative, got -1"


@pytest.mark.slow
def test_font_smoke_retrains_both_configs_and_scores_them_on_held_out_families(ray_session, tmp_path):
    out = tmp_path / "fvb.md"
    assert main(["--smoke", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "SMOKE RUN" in text and "font families that neither train nor val has" in text
    row = next(line for line in text.splitlines() if line.startswith("| 0 | "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert 1 <= int(cells[1]) <= TASKS["font"].smoke.trials  # the search started trials
    for pair in cells[4:6]:  # found and baseline: val / test / epochs
        val, test, epochs = (float(x) for x in pair.split(" / "))
        assert 0 <= val <= 1 and 0 <= test <= 1 and epochs >= 1
    assert not out.with_name("fvb_done").exists()  # the report holds every seed now
