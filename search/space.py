"""Loading a space file (`spaces/<task>.py`) and checking it names everything a search needs."""

from __future__ import annotations

import importlib.resources
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.machinery import SourceFileLoader
from pathlib import Path
from typing import Any

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.config import resolve_config
from hpsearch.trainables.tasks import Task, get_task

REQUIRED = ("TASK", "METRIC", "MODE", "BUDGET_S", "MAX_EPOCHS", "BASELINE", "space")
METRICS = ("val_acc", "val_loss")


@dataclass(frozen=True)
class Space:
    path: Path
    task: Task
    metric: str
    mode: str
    budget_s: float
    max_epochs: int
    baseline: dict[str, Any]  # the seed's configuration, resolved against the defaults
    suggest: Callable[[Any], dict[str, Any] | None]  # Optuna define-by-run function
    quick: dict[str, Any] = field(default_factory=dict)

    def trial_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's full config: the baseline with the searcher's values on top."""
        return resolve_config(self.task, self.baseline, params)


def module_name(path: Path) -> str:
    # A stable name, so objects defined in the file (the space function) pickle by reference
    # and unpickle in a later process that loads the same file: needed by --resume.
    return "hpsearch_space_" + re.sub(r"\W", "_", path.stem)


def builtin_spaces() -> list[str]:
    """The names of the spaces this package ships (spaces/<name>.py), which ``--space NAME`` takes."""
    return sorted(p.stem for p in _builtin_dir().glob("*.py") if not p.stem.startswith("_"))


def _builtin_dir() -> Path:
    return Path(str(importlib.resources.files("hpsearch.spaces")))


def builtin_space(name: str) -> Path | None:
    """The file of the space this package ships as ``name`` (``font``), or None if it ships none."""
    path = _builtin_dir() / f"{name}.py"
    return path if name in builtin_spaces() and path.is_file() else None


def space_path(spec: str | Path) -> Path:
    """The file ``--space`` names: a path, or a bare name (``font``: no folder, no suffix) for the
    space this package ships under that name. A file that exists wins over a built-in name."""
    path = Path(spec)
    if path.is_file():
        return path
    builtin = ", ".join(builtin_spaces())
    if path.parent == Path(".") and not path.suffix:
        found = builtin_space(path.name)
        if found:
            return found
        raise UsageError(f"no built-in space {path.name!r} (built-in: {builtin}), and no file of that name")
    raise UsageError(f"space file {path} not found (built-in spaces, by name: {builtin})")


def load_space(spec: str | Path) -> Space:
    """Load and check a space: a space file's path, or the name of a built-in space (``font``)."""
    path = space_path(spec)
    name = module_name(path)
    # An explicit loader: the file is Python whatever its name (importlib goes by the suffix).
    spec = importlib.util.spec_from_file_location(name, path, loader=SourceFileLoader(name, str(path)))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a user's file: report its error in one line, not a traceback
        detail = " ".join(str(e).split())  # the message may span lines; the report must not
        raise UsageError(f"space file {path} failed to load: {type(e).__name__}: {detail}") from e
    sys.modules[name] = module
    missing = [n for n in REQUIRED if not hasattr(module, n)]
    if missing:
        raise UsageError(f"space file {path} lacks {', '.join(missing)} (needed: {', '.join(REQUIRED)})")
    if module.METRIC not in METRICS or module.MODE not in ("max", "min"):
        raise UsageError(f"space file {path}: METRIC must be one of {METRICS} and MODE max or min")
    if not callable(module.space):
        raise UsageError(f"space file {path}: `space` must be a function taking an Optuna trial")
    if not (isinstance(module.BUDGET_S, int | float) and module.BUDGET_S > 0):
        raise UsageError(f"space file {path}: BUDGET_S must be a positive number of seconds")
    if not (isinstance(module.MAX_EPOCHS, int) and module.MAX_EPOCHS > 0):
        raise UsageError(f"space file {path}: MAX_EPOCHS must be a positive integer")
    task = get_task(module.TASK)
    if not isinstance(module.BASELINE, dict):
        raise UsageError(
            f"space file {path}: BASELINE must be a dict of config values, got {module.BASELINE!r}"
        )
    try:
        baseline = resolve_config(task, module.BASELINE)
    except UsageError as e:
        raise UsageError(f"space file {path}: BASELINE: {e}") from e
    space = Space(
        path,
        task,
        module.METRIC,
        module.MODE,
        float(module.BUDGET_S),
        module.MAX_EPOCHS,
        baseline,
        module.space,
        dict(getattr(module, "QUICK", {})),
    )
    check_suggestions(space)
    return space


def check_suggestions(space: Space, samples: int = 3) -> None:
    """Draw a few points from the space on the driver, so that a bad key or value is one line here
    rather than a traceback in every trial; ``epochs`` is the search's horizon, never a knob."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line for a check
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    finally:
        optuna.logging.set_verbosity(verbosity)
    for _ in range(samples):
        trial = study.ask()
        try:
            space.suggest(trial)
        except Exception as e:
            detail = " ".join(str(e).split())
            raise UsageError(f"space file {space.path}: space() failed: {type(e).__name__}: {detail}") from e
        if "epochs" in trial.params:
            raise UsageError(
                f"space file {space.path}: space() suggests 'epochs', but every trial trains over the "
                "search's horizon (MAX_EPOCHS, --max-epochs) so that ASHA compares like with like; "
                "remove it (docs/search-design.md)"
            )
        try:
            space.trial_config(trial.params)
        except UsageError as e:
            raise UsageError(f"space file {space.path}: space() suggests {trial.params}: {e}") from e
        _check_baseline_inside(space, trial.distributions)
        study.tell(trial, 0.0)


def _check_baseline_inside(space: Space, distributions: dict[str, Any]) -> None:
    # The baseline is the search's first trial: Optuna refuses a value outside a knob's choices.
    for name, dist in distributions.items():
        value = space.baseline.get(name)
        try:
            inside = dist._contains(dist.to_internal_repr(value))
        except (ValueError, TypeError):
            inside = False
        if not inside:
            raise UsageError(
                f"space file {space.path}: BASELINE {name}={value!r} is outside what space() suggests "
                f"for it ({dist}); the baseline is the first trial, so its values must be in the space"
            )
