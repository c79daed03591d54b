"""An exported configuration: one YAML file that says what to train and where it came from.

    task: font                      # what to train
    space: spaces/font.py           # the space file of the search (its data options, its budget)
    quick: true                     # the search ran on the space's quick data
    budget_s: 150.0                 # the search's per-trial training budget
    metric: val_acc                 # what the search ranked by, and the value this config reached
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
    config: {optimizer: adam, lr: 0.0012, ...}   # every resolved value

`search/export.py` writes these; `search/train.py --config` and `search/ensemble.py` read them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from search.provenance import REPO
from search.space import Space, load_space
from trainables.config import resolve_config
from trainables.errors import UsageError
from trainables.tasks import Task, get_task


@dataclass
class ExportedConfig:
    task: str
    config: dict[str, Any]
    space: str
    quick: bool = False
    budget_s: float = 600.0
    metric: str = "val_acc"
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
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept and written back

    @property
    def name(self) -> str:
        return self.trial_id or self.run_id or self.task

    def resolved(self, overrides: dict[str, Any] | None = None) -> tuple[Task, dict[str, Any]]:
        """The task and its config, checked again against today's defaults (an old export whose
        keys no longer exist fails loudly rather than training something else)."""
        task = get_task(self.task)
        return task, resolve_config(task, self.config, overrides or {})

    def load_space(self) -> Space:
        """The search's space file: where it was, else the file of the same name in this repo's spaces/."""
        for candidate in (Path(self.space), REPO / "spaces" / Path(self.space).name):
            if candidate.is_file():
                return load_space(candidate)
        raise UsageError(f"the space file {self.space} of this export is not here (nor in {REPO / 'spaces'})")

    def to_yaml(self) -> str:
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("extra", "config")}
        return yaml.safe_dump({**data, **self.extra, "config": self.config}, sort_keys=False)


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
