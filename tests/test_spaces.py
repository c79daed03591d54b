"""The space files: each loads, its baseline is the seed's configuration, and its space contains it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpsearch.plumbing.errors import UsageError
from hpsearch.search.space import REQUIRED, load_space
from hpsearch.trainables.config import defaults_for, resolve_config
from hpsearch.trainables.tasks import TASKS

SPACES_DIR = Path(__file__).resolve().parents[1] / "spaces"
SPACE_FILES = sorted(p for p in SPACES_DIR.glob("*.py") if not p.name.startswith("_"))

# The seed configurations as seed-tasks.md gives them, per space file (keys a seed does not state
# are left out). A space file of a task that is not a seed has no entry here.
SEEDS = {
    "font": dict(
        optimizer="adam",
        lr=1e-3,
        schedule="step",
        step_size=3,
        gamma=0.5,
        batch_size=64,
        epochs=7,
        dropout1=0.5,
        dropout2=0.3,
        stem_channels=16,
        stem_kernel=7,
        width_mult=1.0,
        blocks_per_stage=2,
        fc_width=256,
    ),
    "emnist": dict(
        optimizer="adam",
        lr=1e-3,
        schedule="none",
        batch_size=256,
        dropout=0.2,
        layers=3,
        hidden=256,
        epochs=7,
    ),
    "emnist_digit_letter": dict(
        optimizer="adam",
        lr=1e-3,
        schedule="none",
        batch_size=256,
        dropout=0.2,
        layers=3,
        hidden=128,
        epochs=8,
    ),
    "cifar100": dict(
        optimizer="sgd",
        lr=5e-3,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        batch_size=200,
        epochs=30,
        depth=10,
        width=64,
        augment="flip",  # RandomHorizontalFlip(0.5) on train
    ),
    "cifar10": dict(
        optimizer="adam",
        lr=3e-3,
        weight_decay=1e-5,
        batch_size=64,
        conv1_channels=64,
        conv1_kernel=5,
        mid_channels=32,
        last_channels=16,
    ),
    "mnist": dict(optimizer="adam", lr=3.75e-3, batch_size=200, channels=32, fc1=1024, fc2=512, dropout=0.5),
}

ids = [p.stem for p in SPACE_FILES]


@pytest.fixture(autouse=True)
def quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


def in_distribution(dist: optuna.distributions.BaseDistribution, value) -> bool:
    try:
        return dist._contains(dist.to_internal_repr(value))
    except ValueError:  # a categorical raises for a value that is not one of its choices
        return False


def test_every_seed_has_a_space_file():
    assert set(SEEDS) <= {p.stem for p in SPACE_FILES}


@pytest.mark.parametrize("path", SPACE_FILES, ids=ids)
def test_space_file_loads_for_a_registered_task(path):
    space = load_space(path)
    assert space.task is TASKS[space.task.name]
    assert space.metric in ("val_acc", "val_loss") and space.mode in ("max", "min")
    assert space.budget_s > 0 and space.max_epochs >= 1


@pytest.mark.parametrize("path", SPACE_FILES, ids=ids)
def test_space_baseline_is_the_seed_configuration(path):
    if path.stem not in SEEDS:
        pytest.skip(f"{path.name} is not one of the seed tasks")
    baseline = load_space(path).baseline
    mismatched = {k: (baseline[k], v) for k, v in SEEDS[path.stem].items() if baseline[k] != v}
    assert not mismatched, f"(baseline, seed) differ: {mismatched}"


@pytest.mark.parametrize("path", SPACE_FILES, ids=ids)
def test_space_contains_its_baseline(path):
    space = load_space(path)
    study = optuna.create_study(direction="maximize" if space.mode == "max" else "minimize")
    study.enqueue_trial(space.baseline)
    trial = study.ask()
    try:
        space.suggest(trial)
    except ValueError as e:  # Optuna's answer to a categorical value that is not a choice
        pytest.fail(f"the baseline is outside the space: {e}")
    assert trial.params, "the space suggests nothing"
    for name, value in trial.params.items():
        # enqueue_trial hands the baseline's value over even when it lies outside the
        # distribution (with only a warning), so membership is checked separately.
        assert value == space.baseline[name], name
        assert in_distribution(trial.distributions[name], space.baseline[name]), (
            f"{name}={space.baseline[name]!r} is outside {trial.distributions[name]}"
        )
    # The baseline's trial is the baseline itself.
    assert space.trial_config(trial.params) == space.baseline


@pytest.mark.parametrize("path", SPACE_FILES, ids=ids)
def test_space_samples_resolve_to_valid_configs(path):
    space = load_space(path)
    known = set(defaults_for(space.task))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set] = {}
    for _ in range(20):
        trial = study.ask()
        space.suggest(trial)
        assert set(trial.params) <= known, set(trial.params) - known
        config = space.trial_config(trial.params)  # raises UsageError on a value it refuses
        assert config == resolve_config(space.task, space.baseline, trial.params)
        for name, value in trial.params.items():
            seen.setdefault(name, set()).add(value)
        study.tell(trial, 0.0)
    # Random sampling moves every continuous parameter: the space really is searched.
    assert len(seen["lr"]) > 1


def write_space(tmp_path: Path, text: str, name: str = "mine.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


VALID = """
TASK = "mnist"
METRIC = "val_acc"
MODE = "max"
BUDGET_S = 60
MAX_EPOCHS = 3
BASELINE = {"lr": 1e-3}


def space(trial):
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
"""


def test_load_space_reads_a_user_copy(tmp_path):
    space = load_space(write_space(tmp_path, VALID))
    assert space.task.name == "mnist" and space.baseline["lr"] == 1e-3
    assert space.baseline["batch_size"] == defaults_for(TASKS["mnist"])["batch_size"]


def bad_space(tmp_path: Path, case: str) -> Path:
    if case == "missing file":
        return tmp_path / "nope.py"
    if case == "no space":
        return write_space(tmp_path, VALID.split("def space")[0])
    if case == "no BASELINE":
        return write_space(tmp_path, VALID.replace('BASELINE = {"lr": 1e-3}', ""))
    if case == "raises on import":
        return write_space(tmp_path, VALID + '\nraise RuntimeError("first line\\nsecond line")\n')
    if case == "syntax error":
        return write_space(tmp_path, VALID + "\ndef broken(:\n")
    if case == "unknown TASK":
        return write_space(tmp_path, VALID.replace('"mnist"', '"mnistt"'))
    if case == "bad BASELINE":
        return write_space(tmp_path, VALID.replace('{"lr": 1e-3}', '{"lr": -1.0}'))
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing file", r"space file .*nope\.py not found"),
        ("no space", r"lacks space \(needed: "),
        ("no BASELINE", r"lacks BASELINE \(needed: "),
        ("raises on import", r"failed to load: RuntimeError: first line second line"),
        ("syntax error", r"failed to load: SyntaxError"),
        ("unknown TASK", r"unknown task 'mnistt'; known tasks: font, "),
        ("bad BASELINE", r"BASELINE: lr must be > 0"),
    ],
)
def test_load_space_error_is_one_line_usage_error(tmp_path, case, match):
    with pytest.raises(UsageError, match=match) as info:
        load_space(bad_space(tmp_path, case))
    assert "\n" not in str(info.value)


def test_load_space_names_every_required_name_it_lacks(tmp_path):
    with pytest.raises(UsageError) as info:
        load_space(write_space(tmp_path, "X = 1\n"))
    assert f"lacks {', '.join(REQUIRED)} " in str(info.value)
