"""The best models are kept: a trial's checkpoint, the search's top K as MLflow models, the
exported weights, and search/predict.py on a picture.

One tiny real search (the shared Ray, a temp SQLite store) backs most tests; the trial's own
logic and the tracker's failure paths are tested on their own, without Ray.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow.artifacts
import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.models import Model
from PIL import Image
from ray.tune import Callback, Checkpoint
from search_helpers import TINY_SPACE, tiny_data, write_tiny_space

from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.cli import run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search import export, predict, trainable
from hpsearch.search.exported import build_classifier, read_exported
from hpsearch.search.run import parse_args, settings_from
from hpsearch.search.space import load_space
from hpsearch.search.summary import top_finished, trials_frame
from hpsearch.search.tracking import MODEL_TAG, RANK_TAG, MlflowTracker, global_tracking_uri, model_signature
from hpsearch.search.trainable import EXAMPLE_FILE, INFO_FILE, MODEL_FILE, KeptCheckpoint, keep_checkpoints
from hpsearch.search.tuner import SearchSettings, build_tuner
from hpsearch.trainables import tasks
from hpsearch.trainables.loop import TrainResult, evaluate, score, train
from hpsearch.trainables.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
MNIST = get_task("mnist")
K = 2
DATA = tiny_data()


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return (probs.argmax(1) == labels).float().mean().item()


# One trial's checkpoint, without Ray


def fake_train(stopped: str):
    """Stands in for trainables.loop.train: two reports, the last one ending as ``stopped``."""

    def run(task, config, data, *, on_epoch, **kwargs) -> TrainResult:
        model = build_classifier(task, config).model
        for epoch in (1, 2):
            on_epoch({"epoch": epoch, "val_acc": 0.5, "stopped": stopped if epoch == 2 else ""})
        return TrainResult(model=model, best_epoch=1, best_val_acc=0.5, stopped=stopped, horizon_epochs=2)

    return run


@pytest.mark.parametrize("stopped, keeps", [("completed", True), ("budget", True), ("diverged", False)])
def test_trial_hands_back_a_checkpoint_only_when_it_ends_on_its_own(
    monkeypatch, one_torch_thread, tmp_path, stopped, keeps
):
    reports = []
    monkeypatch.setattr(trainable, "train", fake_train(stopped))
    monkeypatch.setattr(trainable.tune, "report", lambda m, checkpoint=None: reports.append((m, checkpoint)))
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(max_epochs=2, cpus_per_trial=1)
    trainable.run_trial({}, data=DATA, task_name="mnist", baseline=space.baseline, settings=settings)
    # Every report reaches Tune, in order; only a finished trial's last one carries a checkpoint.
    assert [m["epoch"] for m, _ in reports] == [1, 2]
    assert reports[0][1] is None
    assert (reports[1][1] is not None) == keeps


def test_trial_reports_the_device_it_really_ran_on(monkeypatch, one_torch_thread, tmp_path):
    reports = []
    monkeypatch.setattr(trainable, "train", fake_train("completed"))
    monkeypatch.setattr(trainable.tune, "report", lambda m, checkpoint=None: reports.append(m))
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(max_epochs=2, cpus_per_trial=1, gpus_per_trial=0)
    trainable.run_trial({}, data=DATA, task_name="mnist", baseline=space.baseline, settings=settings)
    assert [m["device"] for m in reports] == ["cpu", "cpu"]  # the tracker tags the run with it


def test_trial_out_of_memory_fails_with_one_line_of_numbers(monkeypatch, one_torch_thread, tmp_path):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainable, "train", out_of_memory)
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(max_epochs=2, cpus_per_trial=1)
    with pytest.raises(trainable.TrialOutOfMemory) as failed:
        trainable.run_trial(
            {"batch_size": 32}, data=DATA, task_name="mnist", baseline=space.baseline, settings=settings
        )
    images = sum(split.x.nelement() for split in (DATA.train, DATA.val, DATA.test))  # uint8
    labels = 8 * sum(split.y.nelement() for split in (DATA.train, DATA.val, DATA.test))  # int64
    message = str(failed.value)
    assert message.startswith("out of memory on cpu: it was estimated to need ~"), message
    assert f"(data {(images + labels) / 2**20:.1f} MiB, model and optimizer " in message
    assert message.endswith("; try a smaller batch_size than 32, or fewer trials per GPU")
    assert "\n" not in message
    assert isinstance(failed.value.__cause__, torch.cuda.OutOfMemoryError)  # Ray keeps the cause


def test_trial_checkpoint_holds_the_best_reports_weights(monkeypatch, one_torch_thread, tmp_path):
    saved = []

    def report(metrics, checkpoint=None):
        if checkpoint is not None:  # Tune copies the folder before report returns: so do we
            saved.append(Path(checkpoint.path))
            shutil.copytree(checkpoint.path, tmp_path / "copy")

    monkeypatch.setattr(trainable.tune, "report", report)
    space = load_space(write_tiny_space(tmp_path))
    settings = SearchSettings(max_epochs=2, trial_budget_s=60, cpus_per_trial=1)
    params = {"lr": 3e-3, "batch_size": 32}
    history = []
    real_train = trainable.train
    monkeypatch.setattr(
        trainable, "train", lambda *a, on_epoch, **kw: real_train(*a, on_epoch=_tee(on_epoch, history), **kw)
    )
    trainable.run_trial(params, data=DATA, task_name="mnist", baseline=space.baseline, settings=settings)

    (folder,) = saved
    assert not folder.exists()  # a temporary folder: nothing is left behind in a reused worker
    copy = tmp_path / "copy"
    assert sorted(p.name for p in copy.iterdir()) == sorted([MODEL_FILE, INFO_FILE, EXAMPLE_FILE])
    state = torch.load(copy / MODEL_FILE, weights_only=True)
    info = json.loads((copy / INFO_FILE).read_text())
    config = settings.trial_config(MNIST, space.baseline, params)
    assert info["config"] == config and info["task"] == "mnist" and info["classes"] == DATA.classes
    best = max(history, key=lambda r: r["val_acc"])
    assert info["value"] == best["val_acc"] and info["best_epoch"] == best["epoch"]
    assert info["horizon_epochs"] == history[-1]["horizon_epochs"]
    # The weights are the best report's: they score on val what that report did.
    model = build_classifier(MNIST, info["config"], state).model
    assert evaluate(model, DATA.val, MNIST)[1] == pytest.approx(best["val_acc"])
    example = torch.load(copy / EXAMPLE_FILE, weights_only=True)
    assert example.dtype == torch.uint8 and example.shape == (2, *MNIST.input_shape)


def _tee(on_epoch, history):
    def both(report):
        history.append(report)
        on_epoch(report)

    return both


def test_keep_checkpoints_keeps_the_ranked_and_deletes_the_rest(tmp_path):
    def result(trial_id: str) -> SimpleNamespace:
        folder = tmp_path / trial_id / "checkpoint_000000"
        folder.mkdir(parents=True)
        (folder / MODEL_FILE).write_bytes(b"weights")
        (folder / INFO_FILE).write_text("{}")  # a finished trial's: its kept model's, not a mid-trial state
        checkpoint = Checkpoint.from_directory(folder)
        return SimpleNamespace(
            metrics={"trial_id": trial_id}, path=str(tmp_path / trial_id), checkpoint=checkpoint,
            best_checkpoints=[(checkpoint, {})],
        )  # fmt: skip

    results = [result("a"), result("b"), result("c"), SimpleNamespace(
        metrics={"trial_id": "pruned"}, path="x", checkpoint=None, best_checkpoints=[]
    )]  # fmt: skip
    kept = keep_checkpoints(results, ["c", "pruned", "a"])
    assert [(k.trial_id, k.rank) for k in kept] == [("c", 1), ("a", 3)]  # best first; none for "pruned"
    assert [p.parent.name for p in sorted(tmp_path.glob("*/checkpoint_*"))] == ["a", "c"]
    assert keep_checkpoints(results, []) == []  # --keep-models 0
    assert not list(tmp_path.glob("*/checkpoint_*"))


def test_run_refuses_a_negative_keep_models(tmp_path):
    space_path = write_tiny_space(tmp_path)
    args = parse_args(["--space", str(space_path), "--keep-models", "-1"])
    with pytest.raises(UsageError, match="--keep-models must not be negative"):
        settings_from(args, load_space(space_path))
    assert parse_args(["--space", str(space_path)]).keep_models == 3


# A tiny real search that keeps its K best models


@pytest.fixture(scope="module")
def search(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("kept")
    space = load_space(write_tiny_space(root))
    settings = SearchSettings(trials=3, max_epochs=2, trial_budget_s=60, cpus_per_trial=1, seed=0)
    experiment_dir = root / "results" / "kept"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the store's artifacts go to ./mlruns: here, not in the repository
        tracker = MlflowTracker(
            space, settings, experiment_dir, tracking_uri=uri, experiment=None, command="pytest", quick=False
        )
        results = build_tuner(space, settings, DATA, experiment_dir, callbacks=[tracker]).fit()
        frame = trials_frame(results, space, settings)
        had = {r.metrics["trial_id"]: r.checkpoint is not None for r in results}
        top = top_finished(frame, K)
        models = keep_checkpoints(results, top["trial_id"])
        tracker.finish({"val_acc": float(top["val_acc"].iloc[0])}, [], models=models)
    client = MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("mnist").experiment_id], "tags.`hpsearch.role` = 'trial'"
    )
    return SimpleNamespace(
        root=root,
        uri=uri,
        client=client,
        results=results,
        frame=frame.set_index("trial_id"),
        had=had,
        top=list(top["trial_id"]),
        models=models,
        runs={r.data.tags[tag.TRIAL_ID]: r for r in runs},
    )


def test_search_keeps_the_checkpoints_of_its_k_best_finished_trials(search):
    finished = search.frame["fate"].isin(["completed", "budget"])
    # Every trial that trained to its end handed back a checkpoint; no pruned one did.
    assert all(search.had[t] for t in search.frame.index[finished])
    assert not any(search.had[t] for t in search.frame.index[~finished])
    assert len(search.top) == K and [m.trial_id for m in search.models] == search.top
    left = sorted(search.root.glob("results/kept/*/checkpoint_*"))
    assert len(left) == K  # the others' were deleted
    for kept in search.models:
        assert sorted(p.name for p in Path(kept.checkpoint.path).iterdir()) == sorted(
            [MODEL_FILE, INFO_FILE, EXAMPLE_FILE]
        )


def test_kept_models_are_the_trials_mlflow_models(search, tmp_path):
    for kept in search.models:
        run = search.runs[kept.trial_id]
        model = search.client.get_logged_model(run.data.tags[MODEL_TAG])
        assert run.data.tags[RANK_TAG] == str(kept.rank)
        assert model.status == "READY" and model.name == "model" and model.source_run_id == run.info.run_id
        assert model.tags[tag.TRIAL_ID] == kept.trial_id and model.tags[tag.RANK] == str(
            kept.rank
        )
        uri = f"runs:/{run.info.run_id}/model"
        with global_tracking_uri(search.uri):
            local = mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / kept.trial_id))
        info, loaded = Model.load(local), mlflow.pytorch.load_model(local)
        assert info.signature.inputs.inputs[0].shape == (-1, 1, 28, 28)
        assert info.metadata["classes"] == DATA.classes and info.metadata["task"] == "mnist"
        # It takes raw images (pixels / 255) and scores on val what its trial reported.
        with torch.no_grad():
            probs = loaded(DATA.val.x.float() / 255)
        assert probs.sum(1) == pytest.approx(torch.ones(len(DATA.val)), abs=1e-5)
        assert accuracy(probs, DATA.val.y) == pytest.approx(search.frame.loc[kept.trial_id, "val_acc"])
    others = [r for t, r in search.runs.items() if t not in search.top]
    assert others and not any(MODEL_TAG in r.data.tags for r in others)
    experiment = search.client.get_experiment_by_name("mnist").experiment_id
    assert len(search.client.search_logged_models([experiment])) == K


def test_saving_a_model_leaves_the_process_able_to_train_and_save_again(tmp_path, one_torch_thread):
    # mlflow.pytorch saves with torch.export, which runs the Classifier's forward on fake tensors:
    # normalise's constants made then must not be cached for the process's later runs.
    tasks._constants.cache_clear()  # as in a search's driver, which trains nothing itself
    space = load_space(write_tiny_space(tmp_path))
    config = SearchSettings(max_epochs=1).trial_config(MNIST, space.baseline, {})
    for name in ("first", "second"):  # the second export failed on a "fake tensor ... lifted_tensor_0"
        mlflow.pytorch.save_model(
            build_classifier(MNIST, config),
            str(tmp_path / name),
            signature=model_signature(MNIST),
            input_example=DATA.val.x[:2].float().div(255).numpy(),
            pip_requirements=["torch"],
        )
    result = train(MNIST, config, DATA, device=torch.device("cpu"), budget_s=60)
    # Real numbers, not symbolic ones traced from fake tensors (that run raised GuardOnDataDependentSymNode).
    assert [type(r["val_loss"]) for r in result.history] == [float]
    model = build_classifier(MNIST, config, result.model.state_dict()).model
    assert evaluate(model, DATA.val, MNIST)[0] == pytest.approx(result.history[0]["val_loss"], rel=1e-5)


@pytest.fixture(scope="module")
def exported(search):
    """Every finished trial exported (so that ties in rank do not matter); ``best`` is the YAML
    of the search's best kept trial."""
    out = search.root / "exports"
    finished = int(search.frame["fate"].isin(["completed", "budget"]).sum())
    paths = export.export_search(search.client, "mnist", "kept", finished, out, command="pytest")
    best = next(p for p in paths if read_exported(p).trial_id == search.top[0])
    return SimpleNamespace(paths=paths, out=out, best=best)


def test_export_writes_weights_that_score_what_the_trial_reported(search, exported):
    configs = {read_exported(p).trial_id: (p, read_exported(p)) for p in exported.paths}
    # Exactly the kept trials' exports have weights, each beside its YAML file.
    assert {t for t, (_, c) in configs.items() if c.weights} == set(search.top)
    assert sorted(p.name for p in exported.out.glob("*.pt")) == sorted(
        configs[t][0].with_suffix(".pt").name for t in search.top
    )
    for trial_id in search.top:
        path, config = configs[trial_id]
        assert config.weights == path.with_suffix(".pt").name and config.classes == DATA.classes
        state = torch.load(exported.out / config.weights, weights_only=True)
        task, resolved = config.resolved()
        model = build_classifier(task, resolved, state).model
        assert evaluate(model, DATA.val, task)[1] == pytest.approx(config.value)
    for trial_id, (_, config) in configs.items():  # the horizon each trial's schedule ran over
        last = next(r.metrics for r in search.results if r.metrics["trial_id"] == trial_id)
        assert config.config["epochs"] == last["horizon_epochs"]


def drawn(image: torch.Tensor, scale: int = 4) -> Image.Image:
    """A val image as a user might draw it: larger, dark on light, in RGB."""
    gray = Image.fromarray(255 - image[0].numpy()).resize((28 * scale, 28 * scale), Image.Resampling.NEAREST)
    return gray.convert("RGB")


def test_predict_names_the_class_of_a_picture(search, exported, tmp_path):
    model = predict.load_model(str(exported.best))
    with torch.no_grad():
        right = model.predict(DATA.val.x.float() / 255).argmax(1) == DATA.val.y
    index = int(right.nonzero()[0])  # an image the model gets right
    label = DATA.classes[int(DATA.val.y[index])]
    drawn(DATA.val.x[index]).save(tmp_path / "drawn.png")
    Image.fromarray(DATA.val.x[index, 0].numpy()).save(tmp_path / "as_is.png")
    command = [
        sys.executable,
        "search/predict.py",
        str(exported.best),
        str(tmp_path),
        "--fit",
        "whole",
        "--top",
        "2",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        str(tmp_path / "as_is.png"),
        str(tmp_path / "drawn.png"),
    ]
    for line in lines:
        first, second = line.split(": ", 1)[1].split(", ")
        assert first.split()[0] == label and float(first.split()[1]) >= float(second.split()[1])


def test_predict_takes_the_trials_mlflow_model_too(search, exported, tmp_path, capsys):
    trial_id = search.top[0]
    uri = f"runs:/{search.runs[trial_id].info.run_id}/model"
    x = DATA.val.x[:8]
    for i, image in enumerate(x):
        Image.fromarray(image[0].numpy()).save(tmp_path / f"{i}.png")
    assert (
        predict.main([uri, str(tmp_path), "--fit", "whole", "--tracking-uri", search.uri, "--top", "1"]) == 0
    )
    from_mlflow = capsys.readouterr().out
    assert predict.main([str(exported.best), str(tmp_path), "--fit", "whole", "--top", "1"]) == 0
    assert capsys.readouterr().out == from_mlflow  # one model, two ways in
    assert len(from_mlflow.splitlines()) == 8


# Pictures to inputs


def test_to_input_keeps_a_picture_that_already_looks_like_the_training_data():
    # An MNIST-like digit: background 0, ink up to 255 with soft edges.
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    image[0, 6:22, 12:16] = 255
    image[0, 6:22, 11] = image[0, 6:22, 16] = 90
    got = predict.to_input(Image.fromarray(image[0].numpy()), MNIST, fit="whole")
    assert torch.equal(got, image)


@pytest.mark.parametrize("how", ["black on white", "white on transparent", "black on transparent"])
def test_to_input_frames_a_drawing_as_mnist_digits_are_framed(how):
    # An "L" drawn off-centre on a large canvas, as a user might.
    canvas = np.zeros((300, 200), dtype=np.uint8)
    canvas[40:200, 30:50] = 255
    canvas[180:200, 30:130] = 255
    if how == "black on white":
        picture = Image.fromarray(255 - canvas).convert("RGB")
    else:
        shade = 255 if how.startswith("white") else 0
        rgba = np.zeros((300, 200, 4), dtype=np.uint8)
        rgba[..., :3] = shade
        rgba[..., 3] = canvas  # only the strokes are opaque
        picture = Image.fromarray(rgba, mode="RGBA")
    x = predict.to_input(picture, MNIST)[0].float()
    assert x.shape == (28, 28)
    assert x[0].max() == 0 and x[-1].max() == 0 and x.max() == 255  # light ink on a dark background
    rows, cols = (x > 64).nonzero(as_tuple=True)
    assert rows.max() - rows.min() + 1 == pytest.approx(20, abs=1)  # the taller side fills 20 px
    # Centred on its centre of mass, as MNIST's digits are.
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    assert (x * ys).sum() / x.sum() == pytest.approx(13.5, abs=0.6)
    assert (x * xs).sum() / x.sum() == pytest.approx(13.5, abs=0.6)


def test_predict_mistakes_are_one_error_line(search, exported, tmp_path, capsys):
    Image.new("L", (40, 40), 200).save(tmp_path / "blank.png")
    (tmp_path / "notes.png").write_text("not an image")
    no_weights = read_exported(exported.best)
    no_weights.weights = ""
    (tmp_path / "old.yaml").write_text(no_weights.to_yaml())
    digit = tmp_path / "digit.png"
    Image.fromarray(DATA.val.x[0, 0].numpy()).save(digit)
    cases = [
        ([str(exported.best), str(tmp_path / "blank.png")], "no drawing found"),
        ([str(exported.best), str(tmp_path / "notes.png")], "is not an image"),
        ([str(exported.best), str(tmp_path / "missing.png")], "not found"),
        ([str(tmp_path / "old.yaml"), str(digit)], "has no weights"),
        ([str(exported.best), str(digit), "--top", "0"], "--top must be at least 1"),
        (["runs:/0123456789abcdef/model", str(digit), "--tracking-uri", search.uri], "cannot load"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as stop:
            run_main(lambda argv=argv: predict.main(argv))
        err = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), (argv, err)
        assert message in err[0], (argv, err)


# The tracker's failures and a resumed search, on a store of its own


def trained_checkpoint(folder: Path, seed: int) -> Checkpoint:
    space = load_space(write_tiny_space(folder.parent))
    config = SearchSettings(max_epochs=1).trial_config(MNIST, space.baseline, {"seed": seed})
    result = train(MNIST, config, DATA, device=torch.device("cpu"), budget_s=60)
    folder.mkdir(parents=True)
    trainable.write_checkpoint(folder, result, "mnist", config, DATA)
    return Checkpoint.from_directory(folder)


@pytest.fixture
def small_search(tmp_path, monkeypatch, one_torch_thread):
    """A search of two trials as the tracker logs it, each with a checkpoint; no Ray."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = load_space(write_tiny_space(tmp_path))

    def tracker() -> MlflowTracker:
        settings = SearchSettings(trials=2, max_epochs=1)
        where = tmp_path / "results" / "small"
        return MlflowTracker(
            space, settings, where, tracking_uri=uri, experiment=None, command="t", quick=False
        )

    first = tracker()
    first.setup()
    for trial_id in ("t_00000", "t_00001"):
        trial = SimpleNamespace(trial_id=trial_id, config={}, last_result={})
        first.on_trial_start(0, [], trial)
        trial.last_result = {"training_iteration": 1, "epoch": 1, "val_acc": 0.5, "stopped": "completed"}
        first.on_trial_result(0, [], trial, trial.last_result)
        first.on_trial_complete(0, [], trial)
    checkpoints = {t: trained_checkpoint(tmp_path / t, seed) for seed, t in enumerate(("t_00000", "t_00001"))}
    return SimpleNamespace(
        tracker=first, new_tracker=tracker, client=MlflowClient(uri), checkpoints=checkpoints
    )


def test_a_model_that_fails_to_log_is_one_warning(small_search, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("artifact store full")

    monkeypatch.setattr(mlflow.pytorch, "log_model", broken)
    models = [KeptCheckpoint("t_00000", 1, small_search.checkpoints["t_00000"])]
    with caplog.at_level(logging.WARNING, logger="hpsearch.search.tracking"):
        small_search.tracker.finish({"val_acc": 0.5}, [], models=models)
    assert [r.message for r in caplog.records] == [
        "MLflow: logging trial t_00000's model failed: RuntimeError: artifact store full"
    ]
    client, tracker = small_search.client, small_search.tracker
    assert client.get_run(tracker._parent_id).info.status == "FINISHED"  # the search's end went on
    assert client.search_logged_models([tracker._experiment_id]) == []  # no half-logged model
    assert MODEL_TAG not in client.get_run(tracker._runs["t_00000"]).data.tags


def test_a_resumed_search_keeps_its_models_in_step(small_search):
    tracker, client, checkpoints = small_search.tracker, small_search.client, small_search.checkpoints
    both = [KeptCheckpoint(t, rank, checkpoints[t]) for rank, t in enumerate(checkpoints, 1)]
    tracker.finish({}, [], models=both)
    first = {t: client.get_run(tracker._runs[t]).data.tags[MODEL_TAG] for t in checkpoints}
    # --resume ends with a new tracker (search/run.py makes one), which finds the runs by their tags;
    # now only t_00001 is among the best, ranked first.
    small_search.new_tracker().finish({}, [], models=[KeptCheckpoint("t_00001", 1, checkpoints["t_00001"])])
    runs = {t: client.get_run(tracker._runs[t]).data.tags for t in checkpoints}
    assert MODEL_TAG not in runs["t_00000"] and RANK_TAG not in runs["t_00000"]
    # t_00001's model is the one logged first, not a second copy, now ranked first.
    assert runs["t_00001"][MODEL_TAG] == first["t_00001"] and runs["t_00001"][RANK_TAG] == "1"
    (left,) = client.search_logged_models([tracker._experiment_id])
    assert left.model_id == first["t_00001"] and left.tags[tag.RANK] == "1"


def test_a_tracker_logs_the_best_models_as_trials_finish(small_search, tmp_path):
    # A val_loss space: lower is better, and a trial ranks by its best report, not its last.
    space = load_space(write_loss_space(tmp_path / "loss"))
    uri = f"sqlite:///{tmp_path / 'live.db'}"
    settings = SearchSettings(trials=4, max_epochs=2, metric="val_loss", mode="min")
    tracker = MlflowTracker(
        space, settings, tmp_path / "results" / "live", tracking_uri=uri, experiment="live",
        command="t", quick=False, keep_models=2,
    )  # fmt: skip
    tracker.setup()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("live").experiment_id
    one, two = small_search.checkpoints.values()

    def complete(trial_id: str, losses: list[float], checkpoint: Checkpoint) -> dict[str, str]:
        """The trial's reports and end as Tune calls the tracker; then MLflow's models, trial -> rank."""
        trial = SimpleNamespace(trial_id=trial_id, config={}, last_result={}, checkpoint=checkpoint)
        tracker.on_trial_start(0, [], trial)
        for epoch, loss in enumerate(losses, start=1):
            last = epoch == len(losses)
            trial.last_result = {
                "training_iteration": epoch, "epoch": epoch, "val_loss": loss, "val_acc": 0.5,
                "time_total_s": float(epoch), "stopped": "completed" if last else "",
            }  # fmt: skip
            tracker.on_trial_result(0, [], trial, trial.last_result)
        tracker.on_trial_complete(0, [], trial)
        models = client.search_logged_models([experiment])
        return {m.tags[tag.TRIAL_ID]: m.tags[tag.RANK] for m in models}

    assert complete("t_a", [0.7, 0.5], one) == {"t_a": "1"}  # in MLflow as soon as it finishes
    assert complete("t_b", [0.3, 0.6], two) == {"t_b": "1", "t_a": "2"}  # its best report, 0.3, ranks it
    first_b = client.get_run(tracker._runs["t_b"]).data.tags[MODEL_TAG]
    assert complete("t_c", [0.4], one) == {"t_b": "1", "t_c": "2"}  # t_a pushed out of the top 2
    assert MODEL_TAG not in client.get_run(tracker._runs["t_a"]).data.tags
    assert complete("t_d", [0.9], two) == {"t_b": "1", "t_c": "2"}  # worse (by min) than both: not logged
    # The search's end keeps the same two, logged once each.
    ends = [KeptCheckpoint("t_b", 1, two), KeptCheckpoint("t_c", 2, one)]
    tracker.finish({"val_loss": 0.3}, [], models=ends)
    models = client.search_logged_models([experiment])
    assert sorted(m.tags[tag.TRIAL_ID] for m in models) == ["t_b", "t_c"]
    assert client.get_run(tracker._runs["t_b"]).data.tags[MODEL_TAG] == first_b


# A space whose metric is val_loss: trials keep, and the search ranks, by it

LOSS_SPACE = TINY_SPACE.replace('METRIC = "val_acc"', 'METRIC = "val_loss"').replace(
    'MODE = "max"', 'MODE = "min"'
)


def write_loss_space(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "loss.py"
    # Two learning rates that learn the tiny data within the first reports: val_acc reaches its
    # best early (and a tie keeps the earlier report), while val_loss goes on falling.
    path.write_text(
        LOSS_SPACE.split("def space")[0].replace('"lr": 1e-3', '"lr": 3e-3')
        + 'def space(trial):\n    trial.suggest_categorical("lr", [3e-3, 1e-2])\n'
    )
    return path


class ModelsWhenTrialsComplete(Callback):
    """What MLflow holds as each trial completes, the tracker (before it in Tune's list) done with it."""

    def __init__(self, uri: str) -> None:
        self.uri, self.seen = uri, []

    def on_trial_complete(self, iteration, trials, trial, **info):
        client = MlflowClient(self.uri)
        experiment = client.get_experiment_by_name("mnist").experiment_id
        models = client.search_logged_models([experiment])
        self.seen.append((trial.trial_id, {m.tags[tag.TRIAL_ID]: m.tags[tag.RANK] for m in models}))


def test_a_val_loss_search_keeps_each_trials_lowest_val_loss_weights(ray_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the store's artifacts go to ./mlruns
    path = write_loss_space(tmp_path)
    space = load_space(path)
    asked = settings_from(parse_args(["--space", str(path)]), space)
    assert (asked.metric, asked.mode) == ("val_loss", "min")  # search/run.py takes them from the space
    settings = dataclasses.replace(
        asked, trials=2, max_epochs=2, reports_per_epoch=3, trial_budget_s=60, cpus_per_trial=1
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(
        space, settings, tmp_path / "results" / "loss", tracking_uri=uri, experiment=None,
        command="pytest", quick=False, keep_models=1,
    )  # fmt: skip
    watch = ModelsWhenTrialsComplete(uri)
    results = build_tuner(space, settings, DATA, tmp_path / "results" / "loss", [tracker, watch]).fit()

    finished = [r for r in results if r.checkpoint is not None]
    assert len(finished) == 2
    differs = 0
    for result in finished:
        history = result.metrics_dataframe.set_index("epoch")
        with result.checkpoint.as_directory() as folder:
            state, info, _ = trainable.read_checkpoint(Path(folder))
        assert info["metric"] == "val_loss"
        assert info["value"] == history["val_loss"].min()
        assert info["best_epoch"] == history["val_loss"].idxmin()
        model = build_classifier(MNIST, info["config"], state).model
        assert evaluate(model, DATA.val, MNIST)[0] == pytest.approx(info["value"], rel=1e-5)
        differs += history["val_loss"].idxmin() != history["val_acc"].idxmax()
    assert differs  # so that weights kept by val_acc would have failed the asserts above

    # The first trial to complete was in MLflow before the search ended; never more than K=1 model.
    (first, models), *_ = watch.seen
    assert models == {first: "1"}
    assert all(len(models) == 1 for _, models in watch.seen)
    frame = trials_frame(results, space, settings)
    top = top_finished(frame, 1)
    assert top["val_loss"].iloc[0] == frame["val_loss"].min()  # ranked by val_loss, lowest first
    models = keep_checkpoints(results, top["trial_id"])
    tracker.finish({"val_loss": float(top["val_loss"].iloc[0])}, [], models=models)
    client = MlflowClient(uri)
    (logged,) = client.search_logged_models([client.get_experiment_by_name("mnist").experiment_id])
    assert logged.tags[tag.TRIAL_ID] == top["trial_id"].iloc[0]
    with global_tracking_uri(uri):
        loaded = mlflow.pytorch.load_model(f"models:/{logged.model_id}")
    with torch.no_grad():
        probs = loaded(DATA.val.x.float() / 255)
    assert score(probs, DATA.val.y)[0] == pytest.approx(top["val_loss"].iloc[0], rel=1e-4)
