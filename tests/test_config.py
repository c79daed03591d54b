"""Config resolution: one source of defaults, loud failure on unknown keys and bad values."""

from __future__ import annotations

import math

import pytest

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.augment import AUGMENTATIONS
from hpsearch.trainables.config import TRAIN_DEFAULTS, defaults_for, parse_assignments, resolve_config
from hpsearch.trainables.models import MODELS
from hpsearch.trainables.tasks import TASKS

MNIST, CIFAR10 = TASKS["mnist"], TASKS["cifar10"]


@pytest.mark.parametrize("task_name", list(TASKS))
def test_resolve_config_fills_training_and_model_defaults(task_name):
    task = TASKS[task_name]
    config = resolve_config(task)
    assert config == {**TRAIN_DEFAULTS, **MODELS[task.model].defaults}
    assert config == defaults_for(task)


def test_resolve_config_applies_layers_in_order():
    config = resolve_config(MNIST, {"lr": 0.1, "batch_size": 32}, {"lr": 0.2})
    assert config["lr"] == 0.2 and config["batch_size"] == 32
    assert config["optimizer"] == TRAIN_DEFAULTS["optimizer"]  # untouched keys keep their default


def test_resolve_config_returns_a_new_dict_each_time():
    config = resolve_config(MNIST, {"lr": 0.1})
    config["lr"] = 99.0
    layer = {"lr": 0.5}
    resolve_config(MNIST, layer)
    assert resolve_config(MNIST)["lr"] == TRAIN_DEFAULTS["lr"] and layer == {"lr": 0.5}


@pytest.mark.parametrize("task_name", list(TASKS))
def test_resolve_config_unknown_key_lists_the_known_keys(task_name):
    task = TASKS[task_name]
    with pytest.raises(UsageError) as info:
        resolve_config(task, {"learning_rate": 1e-3})
    message = str(info.value)
    assert "'learning_rate'" in message and "\n" not in message
    known = message.split("known keys: ", 1)[1].split(", ")
    assert known == list(defaults_for(task))


def test_resolve_config_rejects_another_familys_knob():
    # `hidden` is the LSTM's knob: the MNIST CNN must not accept it silently.
    with pytest.raises(UsageError, match="unknown config key 'hidden' for task 'mnist'"):
        resolve_config(MNIST, {"hidden": 128})


@pytest.mark.parametrize(
    ("task_name", "key", "value", "match"),
    [
        ("mnist", "lr", "fast", "lr must be float"),
        ("mnist", "lr", None, "lr must be float"),
        ("mnist", "lr", True, "lr must be float"),  # bool is an int in Python, not a number here
        ("mnist", "batch_size", 64.5, "batch_size must be int"),
        ("mnist", "batch_size", "64", "batch_size must be int"),
        ("mnist", "batch_size", True, "batch_size must be int"),
        ("mnist", "nesterov", 1, "nesterov must be bool"),
        ("mnist", "nesterov", "yes", "nesterov must be bool"),
        ("mnist", "optimizer", 1, "optimizer must be str"),
        ("mnist", "optimizer", "adagrad", "optimizer must be one of adam, adamw, sgd, rmsprop"),
        ("mnist", "schedule", "linear", "schedule must be one of"),
        ("mnist", "augment", "flip", "augment must be one of none, affine"),  # gray digits: no flips
        ("cifar10", "augment", "affine", "augment must be one of none, flip, flip_crop"),
        ("mnist", "augment", "rotate", "augment must be one of"),
        ("mnist", "lr", -1e-3, "lr must be > 0"),
        ("mnist", "lr", 0, "lr must be > 0"),
        ("mnist", "epochs", 0, "epochs must be > 0"),
        ("mnist", "batch_size", -64, "batch_size must be > 0"),
        ("mnist", "weight_decay", -1e-4, "weight_decay must not be negative"),
        ("mnist", "seed", -1, "seed must not be negative"),
        ("mnist", "dropout", 1.5, "dropout must be between 0 and 1"),
        ("font", "dropout1", 1.01, "dropout1 must be between 0 and 1"),
        ("mnist", "momentum", 1.5, "momentum must be between 0 and 1"),
        ("mnist", "label_smoothing", -0.1, "label_smoothing must be between 0 and 1"),
        ("mnist", "gamma", 2.0, "gamma must be between 0 and 1"),
        ("mnist", "lr", math.nan, "lr must be finite"),
        ("mnist", "lr", math.inf, "lr must be finite"),
        ("mnist", "weight_decay", -math.inf, "weight_decay must be finite"),
    ],
)
def test_resolve_config_rejects_a_bad_value(task_name, key, value, match):
    with pytest.raises(UsageError, match=match) as info:
        resolve_config(TASKS[task_name], {key: value})
    assert "\n" not in str(info.value)


def test_resolve_config_checks_the_merged_result_not_each_layer():
    # An earlier layer's bad value is still caught if no later layer replaces it ...
    with pytest.raises(UsageError, match="lr must be > 0"):
        resolve_config(MNIST, {"lr": -1.0}, {"batch_size": 32})
    # ... and a later layer may fix an earlier one's value.
    assert resolve_config(MNIST, {"lr": -1.0}, {"lr": 0.1})["lr"] == 0.1


def test_resolve_config_accepts_ints_for_floats():
    config = resolve_config(MNIST, {"lr": 1, "weight_decay": 0, "dropout": 0})
    assert config["lr"] == 1.0 and type(config["lr"]) is float
    assert type(config["weight_decay"]) is float and type(config["dropout"]) is float


def test_resolve_config_accepts_whole_floats_for_ints():
    # YAML or a searcher may hand over 64.0; it is the int 64 once resolved.
    config = resolve_config(MNIST, {"batch_size": 64.0, "epochs": 3.0})
    assert config["batch_size"] == 64 and type(config["batch_size"]) is int
    assert type(config["epochs"]) is int


@pytest.mark.parametrize("task_name", list(TASKS))
def test_resolve_config_accepts_every_augmentation_of_the_task(task_name):
    task = TASKS[task_name]
    assert set(task.augmentations) <= set(AUGMENTATIONS)  # each is one the loop can run
    for kind in task.augmentations:
        assert resolve_config(task, {"augment": kind})["augment"] == kind


def test_parse_assignments_reads_values_as_typed_scalars():
    parsed = parse_assignments(["lr=3e-3", "nesterov=true", "optimizer=sgd", "batch_size=128", "gamma=0.5"])
    assert parsed == {"lr": 3e-3, "nesterov": True, "optimizer": "sgd", "batch_size": 128, "gamma": 0.5}
    assert type(parsed["lr"]) is float and type(parsed["batch_size"]) is int


@pytest.mark.parametrize(
    ("text", "value"), [("1e-4", 1e-4), ("1.5e3", 1500.0), ("-2E-2", -0.02), (".5", 0.5)]
)
def test_parse_assignments_reads_exponent_floats(text, value):
    # YAML 1.1 alone would leave "1e-4" (no dot) and "1.5e3" (no exponent sign) as strings.
    assert parse_assignments([f"lr={text}"]) == {"lr": value}


def test_parse_assignments_feeds_resolve_config():
    overrides = parse_assignments(["lr=3e-3", "nesterov=true", "optimizer=sgd"])
    config = resolve_config(MNIST, overrides)
    assert (config["lr"], config["nesterov"], config["optimizer"]) == (3e-3, True, "sgd")


def test_parse_assignments_keeps_everything_after_the_first_equals_sign():
    assert parse_assignments([" augment =flip_crop", "optimizer=a=b"]) == {
        "augment": "flip_crop",
        "optimizer": "a=b",
    }


@pytest.mark.parametrize("pair", ["lr", "=3e-3", ""])
def test_parse_assignments_rejects_a_pair_without_key_and_equals_sign(pair):
    with pytest.raises(UsageError, match="--set expects key=value"):
        parse_assignments([pair])
