"""One source of defaults for a training run, and strict resolution of user values.

A resolved config is flat: the training keys below plus the task's model-family knobs.
Unknown keys and bad values raise ``UsageError`` naming what is allowed.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.models import MODELS
from hpsearch.trainables.tasks import Task

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("none", "step", "cosine")

TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.9,  # sgd and rmsprop only
    "nesterov": False,  # sgd only
    "weight_decay": 0.0,
    "schedule": "none",
    "step_size": 3,  # epochs between decays, schedule=step
    "gamma": 0.5,  # decay factor, schedule=step
    "batch_size": 64,
    "epochs": 10,  # a run's horizon: its lr schedule decays over these (may be fractional)
    "label_smoothing": 0.0,
    "augment": "none",
    "seed": 0,
}

CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}
POSITIVE = {"lr", "batch_size", "epochs", "step_size", "gamma"}
UNIT_INTERVAL = {"momentum", "label_smoothing", "gamma"}  # plus every knob named *dropout*


def defaults_for(task: Task) -> dict[str, Any]:
    return {**TRAIN_DEFAULTS, **MODELS[task.model].defaults}


def resolve_config(task: Task, *layers: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then each layer of overrides in turn, checked; returns a new flat dict."""
    config = defaults_for(task)
    for layer in layers:
        for key, value in layer.items():
            if key not in config:
                raise UsageError(
                    f"unknown config key {key!r} for task {task.name!r}; known keys: {', '.join(config)}"
                )
            config[key] = _coerce(key, value, config[key])
    _check(task, config)
    return config


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """``["lr=3e-3", "optimizer=sgd"]`` from the command line into a dict (values as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {pair!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if isinstance(value, str):
            # YAML 1.1 reads exponent floats without a dot or sign ("3e-3", "1.5e3") as strings.
            try:
                value = float(value)
            except ValueError:
                pass
        out[key.strip()] = value
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    # The default's type is the key's type; ints are accepted where floats are expected.
    if key == "epochs" and isinstance(value, int | float) and not isinstance(value, bool):
        # Whole epochs as an int; a search's horizon in sub-epoch reports may end mid-epoch (1.75).
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    raise UsageError(f"{key} must be {type(default).__name__}, got {value!r}")


def _check(task: Task, config: dict[str, Any]) -> None:
    # A model's whole-number knobs are sizes (channels, widths, layers, kernels): 0 builds nothing.
    sizes = {
        k for k, v in MODELS[task.model].defaults.items() if isinstance(v, int) and not isinstance(v, bool)
    }
    sizes |= {k for k in MODELS[task.model].defaults if k.endswith("mult")}
    for key, allowed in {**CHOICES, "augment": task.augmentations}.items():
        if config[key] not in allowed:
            raise UsageError(f"{key} must be one of {', '.join(allowed)}; got {config[key]!r}")
    for key, value in config.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{key} must be finite, got {value!r}")
        if key in POSITIVE and value <= 0:
            raise UsageError(f"{key} must be > 0, got {value!r}")
        if (key in UNIT_INTERVAL or "dropout" in key) and not 0 <= value <= 1:
            raise UsageError(f"{key} must be between 0 and 1, got {value!r}")
        if key in sizes and value <= 0:
            raise UsageError(f"{key} must be > 0, got {value!r}")
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise UsageError(f"{key} must not be negative, got {value!r}")
