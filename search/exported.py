"""An exported configuration: one YAML file that says what to train and where it came from.

    task: font                      # what to train
    space: spaces/font.py           # the space file of the search (its data options, its budget)
    quick: true                     # the search ran on the space's quick data
    budget_s: 150.0                 # the search's per-trial training budget
    metric: val_acc                 # what the search ranked by (max or min), the value this config reached
    mode: max
    value: 0.9255
    best_epoch: 3
    rank: 1                         # its place among the search's finished trials
    fate: completed
    baseline: false                 # true for the seed's own configuration
    experiment: font                # provenance: the MLflow store, search, run and code
    search: font-20261123-120000
    search_run_id: 5f0c...
    run_id: 9a1b...
    trial_id: 3c7d_00004
    tracking_uri: sqlite:///mlflow.db
    code_version: e66543d...
    data_digest: 3f9c0a1b2c3d4e5f             # the data the search trained on: its digest, its source
    data_source: font generated from 9 font families, ...
    weights: best.pt                # the trial's kept weights beside this file ("" if none were kept)
    classes: ['0', '1', ...]        # the model's outputs, in order
    config: {optimizer: adam, lr: 0.0012, epochs: 1.75, ...}   # every resolved value

`config.epochs` is the horizon the trial's schedule ran over (its `horizon_epochs`, possibly
fractional), so a retrain runs the same schedule. A retrain whose data has another digest says
so (an export without one, from before digests were kept, is not checked). `search/export.py`
writes these; `search/train.py --config`, `search/ensemble.py` and `search/predict.py` read them.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from hpsearch.plumbing.errors import UsageError
from hpsearch.search.space import Space, builtin_space, builtin_spaces, load_space
from hpsearch.trainables.config import resolve_config
from hpsearch.trainables.loop import build_task_model
from hpsearch.trainables.tasks import Task, get_task, normalise


@dataclass
class ExportedConfig:
    task: str
    config: dict[str, Any]
    space: str
    quick: bool = False
    budget_s: float = 600.0
    metric: str = "val_acc"
    mode: str = "max"  # the metric's better direction: a retrain keeps the epoch best by it
    value: float | None = None
    best_epoch: int | None = None
    rank: int | None = None
    fate: str = ""
    baseline: bool = False
    experiment: str = ""
    search: str = ""
    search_run_id: str = ""
    run_id: str = ""
    trial_id: str = ""
    tracking_uri: str = ""
    code_version: str = "unknown"
    data_digest: str = ""  # search.provenance.DataIdentity of the search's data; "" if not recorded
    data_source: str = ""
    weights: str = ""  # file name of the kept weights, beside the YAML file
    classes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept and written back

    @property
    def name(self) -> str:
        return self.trial_id or self.run_id or self.task

    def resolved(self, overrides: dict[str, Any] | None = None) -> tuple[Task, dict[str, Any]]:
        """The task and its config, checked again against today's defaults (an old export whose
        keys no longer exist fails loudly rather than training something else)."""
        task = get_task(self.task)
        return task, resolve_config(task, self.config, overrides or {})

    def load_space(self, space_file: str | Path | None = None) -> Space:
        """``space_file`` if the user names one (a file, or a built-in space's name as ``--space``
        takes everywhere), else the built-in space of the export's space file's name.

        An export is data that people share; a space file is Python. So the path written in the
        export is never run: only a file the user names, or one of the spaces this package ships."""
        if space_file:
            return load_space(space_file)
        named = Path(self.space)
        found = builtin_space(named.stem) if named.suffix in ("", ".py") else None
        if found is None:
            raise UsageError(
                f"this export's space file {named.name} is not among the built-in spaces "
                f"({', '.join(builtin_spaces())}), and an export never runs the code it names: "
                "pass --space FILE (the search's space file)"
            )
        return load_space(found)

    def classifier(self, folder: Path) -> Classifier:
        """The trained model, from the weights beside the YAML file in ``folder``."""
        if not self.weights:
            raise UsageError(
                f"the export of {self.name} has no weights: its search kept no model for it "
                "(run search/run.py with --keep-models, or retrain: search/train.py --config)"
            )
        path = Path(folder) / self.weights
        if not path.is_file():
            raise UsageError(f"the export's weights {path} are missing (export again: search/export.py)")
        task, config = self.resolved()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            return build_classifier(task, config, state)
        except (RuntimeError, OSError, pickle.UnpicklingError) as e:  # not a state_dict, or another model's
            first = (str(e).strip().splitlines() or [""])[0]
            raise UsageError(f"{path} does not hold this export's model: {first}") from e

    def to_yaml(self) -> str:
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("extra", "config")}
        return yaml.safe_dump({**data, **self.extra, "config": self.config}, sort_keys=False)


class Classifier(nn.Module):
    """A trained model as a user calls it: images as floats in 0..1 (uint8 pixels / 255), shape
    ``[N, C, H, W]``, in, normalised as in training; softmax probabilities ``[N, classes]`` out."""

    def __init__(self, model: nn.Module, task: Task) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(normalise(images, self.task)).float().softmax(1)


def build_classifier(
    task: Task, config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None
) -> Classifier:
    """The task's model family built from ``config``, with ``state_dict`` loaded, in eval mode."""
    model = build_task_model(task, config)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return Classifier(model, task).eval()


def write_exported(exported: ExportedConfig, path: Path, header: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comment + exported.to_yaml())
    return path


def read_exported(path: str | Path) -> ExportedConfig:
    """An exported config from its YAML file; a missing or malformed file is a UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {path} not found (make one with search/export.py)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UsageError(f"config file {path} is not valid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must be a YAML mapping, as search/export.py writes")
    missing = [k for k in ("task", "config", "space") if k not in data]
    if missing:
        raise UsageError(f"config file {path} lacks {', '.join(missing)} (search/export.py writes them)")
    if not isinstance(data["config"], dict):
        raise UsageError(f"config file {path}: `config` must be a mapping of config values")
    known = {f.name for f in dataclasses.fields(ExportedConfig)} - {"extra"}
    exported = ExportedConfig(
        **{k: v for k, v in data.items() if k in known},
        extra={k: v for k, v in data.items() if k not in known},
    )
    get_task(exported.task)  # an unknown task fails here, naming the known ones
    return exported
