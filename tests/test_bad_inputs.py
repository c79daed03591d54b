"""Every command's answer to a user's mistake: exit code 2, one `error: ...` line, no traceback.

One table of bad inputs across search/run.py, train.py, prepare.py, export.py, ensemble.py,
predict.py and reports/leaderboard.py, each run as a user runs it: a subprocess, here in a
scratch folder (so that a default path such as ./results or ./mlflow.db lands there, never in
the repo). The files they are given are real and tiny: MNIST in its on-disk format, space
files derived from the tests' tiny space, exported configs, a local MLflow store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from mlflow import MlflowClient
from PIL import Image

from hpsearch.trainables.models import MODELS, build_model
from hpsearch.trainables.tasks import VAL_SIZE
from tests.fake_datasets import write_mnist
from tests.search_helpers import TINY_SPACE, write_tiny_space

REPO = Path(__file__).resolve().parents[1]
# PYTHONPATH: the scripts import this checkout's packages whatever the venv's install points at.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
DEAD = "http://127.0.0.1:9"  # the discard port: no server answers there
TIMEOUT_S = 120

# Space files that each break one rule, derived from the tiny space (a later definition wins).
BAD_SPACES = {
    "baseline_int": TINY_SPACE + "\nBASELINE = 5\n",
    "unknown_key": TINY_SPACE
    + '\n\ndef space(trial):\n    trial.suggest_float("learning_rate", 1e-4, 1e-2)\n',
    "epochs": TINY_SPACE + '\n\ndef space(trial):\n    trial.suggest_int("epochs", 1, 3)\n',
    "syntax": TINY_SPACE + "\n\ndef broken(:\n    pass\n",
    "no_metric": TINY_SPACE.replace('METRIC = "val_acc"\n', ""),
}
# An exported config as search/export.py writes one (fewer provenance keys; they are optional).
EXPORT = {
    "task": "mnist",
    "quick": False,
    "budget_s": 30.0,
    "trial_id": "t_00001",
    "weights": "best.pt",
    "classes": [str(k) for k in range(10)],
    "config": {"lr": 1e-3, "batch_size": 32, "epochs": 1, "channels": 4, "fc1": 32, "fc2": 16},
}


def write_export(path: Path, **changes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**EXPORT, **changes}, sort_keys=False))
    return path


def save_weights(path: Path, channels: int) -> None:
    knobs = {**MODELS["mnist_cnn"].defaults, "channels": channels, "fc1": 32, "fc2": 16}
    torch.save(build_model("mnist_cnn", 10, (1, 28, 28), **knobs).state_dict(), path)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> SimpleNamespace:
    """Every file the cases point at, in one scratch folder that is also the commands' cwd."""
    root = tmp_path_factory.mktemp("bad_inputs")
    w = SimpleNamespace(root=root, space=write_tiny_space(root))
    w.bad = {}
    for name, text in BAD_SPACES.items():
        w.bad[name] = root / f"space_{name}.py"
        w.bad[name].write_text(text)
    assert "METRIC" not in BAD_SPACES["no_metric"].split("def space")[0]
    w.data, w.empty, w.cache, w.results = (root / d for d in ("data", "empty", "cache", "results"))
    write_mnist(w.data, n_train=VAL_SIZE["mnist"] + 200, n_test=50)
    w.empty.mkdir()
    w.file = root / "a_file"
    w.file.write_text("not a folder\n")
    # A search that already ran (its tuner.pkl), and one from an older version (no search.json).
    for name in ("taken", "old"):
        (w.results / name).mkdir(parents=True)
        (w.results / name / "tuner.pkl").write_bytes(b"")

    # A local MLflow store with an experiment but no search in it.
    w.store = f"sqlite:///{root / 'store.db'}"
    MlflowClient(w.store).create_experiment("mnist")
    w.no_store = f"sqlite:///{root / 'nope.db'}"

    # Exports: a good one with its weights, and one broken in each way a reader must refuse.
    ex = root / "exports"
    w.good = write_export(ex / "good" / "best.yaml", space=str(w.space))
    save_weights(ex / "good" / "best.pt", channels=4)
    w.stale = write_export(ex / "stale.yaml", space=str(w.space), config={"learning_rate": 1e-3})
    w.cifar = write_export(ex / "cifar.yaml", space=str(w.space), task="cifar10", config={})
    w.ghost_space = write_export(ex / "ghost_space.yaml", space=str(root / "gone" / "ghost.py"))
    w.no_weights = write_export(ex / "no_weights.yaml", space=str(w.space), weights="")
    w.lost_weights = write_export(ex / "lost" / "best.yaml", space=str(w.space))
    w.garbage_weights = write_export(ex / "garbage" / "best.yaml", space=str(w.space))
    (ex / "garbage" / "best.pt").write_bytes(b"not a state dict")
    w.other_weights = write_export(ex / "other" / "best.yaml", space=str(w.space))
    save_weights(ex / "other" / "best.pt", channels=8)  # another model's shapes
    w.list_yaml = ex / "list.yaml"
    w.list_yaml.write_text("- task\n- config\n")
    w.broken_yaml = ex / "broken.yaml"
    w.broken_yaml.write_text("task: [mnist\nconfig: {\n")
    w.no_yaml = ex / "none"
    w.no_yaml.mkdir()

    # Pictures: a digit-like block, a flat square (nothing drawn), and text named .png.
    w.digit, w.flat, w.not_image = root / "digit.png", root / "flat.png", root / "not_image.png"
    picture = Image.new("L", (28, 28), 0)
    picture.paste(255, (10, 6, 16, 22))
    picture.save(w.digit)
    Image.new("L", (28, 28), 0).save(w.flat)
    w.not_image.write_text("hello\n")
    return w


Argv = Callable[[SimpleNamespace], list[str]]
# No network, no GPU, every path in the scratch folder.
LOCAL = ("--gpus", "0", "--offline", "--data-dir", "{data}", "--cache-dir", "{cache}")


def command(script: str, *common: str) -> Callable[..., Argv]:
    """A case's command line: ``script``, its ``common`` options, then the case's own (argparse
    keeps the last of a repeated option: a case's --gpus or --data-dir wins). ``{name}`` in an
    argument is the world's file of that name."""

    def with_args(*args: str) -> Argv:
        return lambda w: [script, *(a.format(**vars(w)) for a in (*common, *args))]

    return with_args


run = command("search/run.py", "--space", "{space}", *LOCAL, "--results-dir", "{results}")
train = command("search/train.py", *LOCAL)
train_space = command("search/train.py", *LOCAL, "--space", "{space}")
prepare = command("search/prepare.py", "--space", "{space}", "--offline", "--data-dir", "{data}")
leaderboard = command("reports/leaderboard.py", "--out", "{root}/report")
export = command("search/export.py", "--out", "{root}/exported")
ensemble = command("search/ensemble.py", *LOCAL)
predict = command("search/predict.py")


def ray_run(*args: str) -> Argv:
    # Past data loading (the fake MNIST) without measuring an epoch: only Ray's start is left.
    return run("--trials", "1", "--reports-per-epoch", "1", *args)


# Each case: its id, its command line (given the world's files), and what its one error line says.
CASES: list[tuple[str, Argv, str]] = [
    # search/run.py: the settings
    ("run-trials-0", run("--trials", "0"), "--trials must be at least 1"),
    ("run-trial-budget-negative", run("--trial-budget", "-5"), "--trial-budget must be positive"),
    ("run-gpus-negative", run("--gpus", "-1"), "--gpus must not be negative"),
    ("run-more-gpus-per-trial", run("--gpus", "1", "--gpus-per-trial", "2"), "--gpus-per-trial is more than"),
    ("run-max-epochs-0", run("--max-epochs", "0"), "--max-epochs must be at least 1"),
    ("run-reports-per-epoch-0", run("--reports-per-epoch", "0"), "--reports-per-epoch must be at least 1"),
    ("run-grace-period-0", run("--grace-period", "0"), "--grace-period must be at least 1"),
    ("run-reduction-factor-1", run("--reduction-factor", "1"), "--reduction-factor must be greater than 1"),
    ("run-time-budget-0", run("--time-budget", "0"), "--time-budget must be positive"),
    ("run-cpus-per-trial-0", run("--cpus-per-trial", "0"), "per-trial resources must be positive"),
    ("run-keep-models-negative", run("--keep-models", "-1"), "--keep-models must not be negative"),
    ("run-scheduler-unknown", run("--scheduler", "bohb"), "argument --scheduler: invalid choice: 'bohb'"),
    (
        "run-wait-for-gpus-without-address",
        run("--wait-for-gpus", "60"),
        "--wait-for-gpus waits for a cluster: give --address",
    ),
    (
        "run-wait-for-gpus-without-gpus",
        run("--address", "127.0.0.1:9", "--wait-for-gpus", "60"),
        "--wait-for-gpus needs --gpus N",
    ),
    # search/run.py: the space file
    ("run-missing-space", run("--space", "{root}/nope.py"), "nope.py not found"),
    ("run-baseline-not-dict", run("--space", "{bad[baseline_int]}"), "BASELINE must be a dict"),
    ("run-space-unknown-key", run("--space", "{bad[unknown_key]}"), "unknown config key"),
    ("run-space-suggests-epochs", run("--space", "{bad[epochs]}"), "suggests 'epochs'"),
    ("run-space-syntax-error", run("--space", "{bad[syntax]}"), "failed to load: SyntaxError"),
    ("run-space-lacks-metric", run("--space", "{bad[no_metric]}"), "lacks METRIC"),
    # search/run.py: where things are
    ("run-cache-dir-is-file", run("--cache-dir", "{file}"), "is a file"),
    ("run-resume-nothing-earlier", run("--resume", "--results-dir", "{empty}"), "no earlier mnist"),
    ("run-resume-missing-name", run("--resume", "--name", "missing"), "nothing to resume"),
    ("run-resume-no-record", run("--resume", "--name", "old"), "has no search.json"),
    ("run-name-taken", run("--name", "taken"), "pass --resume to continue it"),
    ("run-tracking-server-dead", run("--tracking-uri", DEAD), "does not answer"),
    ("run-offline-no-data", run("--data-dir", "{empty}"), "MNIST not found under"),
    ("run-ray-address-dead", ray_run("--address", "127.0.0.1:9"), "no Ray cluster answers"),
    ("run-more-gpus-than-here", ray_run("--gpus", "1000"), "but this machine has"),
    ("run-trial-needs-3-gpus", ray_run("--gpus", "0", "--gpus-per-trial", "3"), "a trial asks for"),
    # search/train.py
    ("train-channels-0", train_space("--set", "channels=0"), "channels must be > 0"),
    ("train-lr-not-number", train_space("--set", "lr=abc"), "lr must be float"),
    ("train-lr-nan", train_space("--set", "lr=nan"), "lr must be finite"),
    ("train-unknown-key", train_space("--set", "nope=1"), "unknown config key 'nope'"),
    ("train-set-without-equals", train_space("--set", "lr"), "--set expects key=value"),
    ("train-epochs-0", train_space("--epochs", "0"), "--epochs must be at least 1"),
    ("train-config-missing", train("--config", "{root}/nope.yaml"), "nope.yaml not found"),
    ("train-config-not-mapping", train("--config", "{list_yaml}"), "must be a YAML mapping"),
    ("train-config-bad-yaml", train("--config", "{broken_yaml}"), "is not valid YAML"),
    ("train-config-stale-key", train("--config", "{stale}"), "unknown config key 'learning_rate'"),
    ("train-config-space-gone", train("--config", "{ghost_space}"), "ghost.py is not among"),
    (
        "train-config-other-task",
        train("--config", "{cifar}", "--space", "{space}"),
        "the export's task is 'cifar10'",
    ),
    (
        "train-config-names-foreign-code",
        train("--config", "{cifar}"),
        "an export never runs the code it names",
    ),
    (  # --space by name with --config too: the built-in space is found (and then its task differs)
        "train-config-builtin-space-by-name",
        train("--config", "{cifar}", "--space", "mnist"),
        "/spaces/mnist.py is 'mnist'",
    ),
    # search/prepare.py
    ("prepare-missing-space", prepare("--space", "{root}/nope.py"), "nope.py not found"),
    ("prepare-offline-no-data", prepare("--data-dir", "{empty}"), "MNIST not found under"),
    ("prepare-cache-dir-is-file", prepare("--cache-dir", "{file}"), "is a file"),
    # reports/leaderboard.py
    ("leaderboard-no-store", leaderboard("--tracking-uri", "{no_store}"), "no MLflow store"),
    ("leaderboard-server-dead", leaderboard("--tracking-uri", DEAD), "does not answer"),
    ("leaderboard-top-0", leaderboard("--tracking-uri", "{store}", "--top", "0"), "--top must be"),
    (
        "leaderboard-unknown-experiment",
        leaderboard("--tracking-uri", "{store}", "--experiment", "nope"),
        "no experiment 'nope'",
    ),
    (
        "leaderboard-unknown-search",
        leaderboard("--tracking-uri", "{store}", "--experiment", "mnist", "--search", "nope"),
        "no search 'nope'",
    ),
    # search/export.py
    ("export-no-store", export("--tracking-uri", "{no_store}"), "no MLflow store"),
    ("export-server-dead", export("--tracking-uri", DEAD), "does not answer"),
    ("export-top-0", export("--tracking-uri", "{store}", "--top", "0"), "--top must be at least 1"),
    ("export-no-search-anywhere", export("--tracking-uri", "{store}"), "no search in any experiment"),
    # search/ensemble.py
    ("ensemble-folder-without-yaml", ensemble("--config", "{no_yaml}"), "no exported configs"),
    ("ensemble-one-member", ensemble("--config", "{good}"), "at least two configs"),
    (
        "ensemble-trial-budget-0",
        ensemble("--config", "{good}", "--config", "{good}", "--trial-budget", "0"),
        "--trial-budget must be positive",
    ),
    (  # the old spelling, checked as the new one
        "ensemble-budget-negative",
        ensemble("--config", "{good}", "--config", "{good}", "--budget", "-1"),
        "--trial-budget must be positive",
    ),
    (
        "ensemble-different-tasks",
        ensemble("--config", "{good}", "--config", "{cifar}"),
        "different tasks",
    ),
    (
        "ensemble-stale-member",
        ensemble("--config", "{good}", "--config", "{stale}"),
        "unknown config key 'learning_rate'",
    ),
    # search/predict.py
    ("predict-missing-image", predict("{good}", "{root}/nope.png"), "nope.png not found"),
    ("predict-not-an-image", predict("{good}", "{not_image}"), "is not an image"),
    ("predict-missing-export", predict("{root}/nope.yaml", "{digit}"), "nope.yaml not found"),
    ("predict-no-weights", predict("{no_weights}", "{digit}"), "has no weights"),
    ("predict-lost-weights", predict("{lost_weights}", "{digit}"), "are missing"),
    ("predict-garbage-weights", predict("{garbage_weights}", "{digit}"), "does not hold"),
    ("predict-other-weights", predict("{other_weights}", "{digit}"), "does not hold"),
    ("predict-nothing-drawn", predict("{good}", "{flat}"), "no drawing found"),
    (
        "predict-mlflow-model-nowhere",
        predict("runs:/0123456789abcdef/model", "{digit}", "--tracking-uri", "sqlite:///{root}/nowhere.db"),
        "no MLflow store at",
    ),
    # argparse's own mistakes: one line too, not the usage block
    ("run-unknown-option", run("--bogus"), "unrecognized arguments: --bogus (see run.py --help)"),
    ("train-epochs-not-a-number", train("--epochs", "two"), "argument --epochs: invalid"),
    ("export-top-not-a-number", export("--top", "x"), "argument --top: invalid int value: 'x'"),
    ("leaderboard-unknown-option", leaderboard("--bogus"), "unrecognized arguments: --bogus"),
    ("prepare-no-space", command("search/prepare.py")(), "the following arguments are required: --space"),
    ("ensemble-no-config", ensemble(), "the following arguments are required: --config"),
]
SLOW = {"run-trial-needs-3-gpus"}  # starts a local Ray (~10 s and more)
# Two commands at a time: each spends seconds importing torch, Ray or MLflow on one core.
WORKERS = 2
TEST = "test_cli_reports_a_bad_input_in_one_line"


def _marks(case_id: str) -> list:
    return [pytest.mark.slow] if case_id in SLOW else []


def run_case(world: SimpleNamespace, argv: Argv) -> subprocess.CompletedProcess | str:
    """The command's outcome, or what it had written to stderr when it did not end in time."""
    script, *args = argv(world)
    command = [sys.executable, str(REPO / script), *args]
    try:
        return subprocess.run(
            command, cwd=world.root, env=ENV, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        return f"no answer in {TIMEOUT_S} s; stderr ends:\n{err[-2000:]}"


@pytest.fixture(scope="module")
def outcomes(world, request) -> Iterator[dict[str, Future]]:
    """Every selected case started on a small pool at once, in table order; each test waits for its own."""
    argvs = {i: argv for i, argv, _ in CASES}
    chosen = [
        item.callspec.id
        for item in request.session.items
        if item.originalname == TEST
    ]
    pool = ThreadPoolExecutor(WORKERS)
    yield {i: pool.submit(run_case, world, argvs[i]) for i in chosen}
    pool.shutdown(cancel_futures=True)  # after a stop (-x, Ctrl-C), the cases not yet started


@pytest.mark.parametrize("expected", [pytest.param(e, id=i, marks=_marks(i)) for i, _, e in CASES])
def test_cli_reports_a_bad_input_in_one_line(outcomes, request, expected):
    done = outcomes[request.node.callspec.id].result()
    if isinstance(done, str):
        pytest.fail(done)
    err = done.stderr
    assert "Traceback" not in err, err[-3000:]
    assert done.returncode == 2, f"exit code {done.returncode}; stderr ends:\n{err[-3000:]}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    assert expected in lines[0]
    # Errors come before any result: stdout, where results go, stays empty.
    assert done.stdout == ""


def test_the_table_is_large_and_its_ids_unique():
    ids = [i for i, _, _ in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
