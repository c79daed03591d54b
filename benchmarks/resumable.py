"""What the seeded benchmarks that can be killed and resumed share.

Each finished unit (a seed, one method's run on a seed) goes to disk as it finishes, under
``<report>_done/``, with the identity of what was measured: a rerun with ``--resume`` keeps the
units of the same identity and refuses another (mixing them would put measurements of different
things in one report). The report, once written, holds every unit, and the store is removed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import ray

from hpsearch.benchmarks.machine import commit
from hpsearch.plumbing.errors import UsageError


def identity(task: str, setting: Any, measurement_version: int) -> dict[str, Any]:
    """What a unit must share with the others of one report: task, setting, code, measurement."""
    return {
        "task": task,
        "setting": asdict(setting) if is_dataclass(setting) else setting,
        "commit": commit(),
        "measurement_version": measurement_version,
    }


class ResumeStore:
    """Finished units on disk, each a JSON value under a key (``seed3``, ``ours-seed3``)."""

    def __init__(self, out: Path, identity: dict[str, Any], resume: bool) -> None:
        self.dir = out.with_name(out.stem + "_done")
        saved = self.dir / "identity.json"
        if resume and saved.exists():
            if json.loads(saved.read_text()) != identity:
                raise UsageError(
                    f"--resume: the runs in {self.dir} were made with another task, setting or code; "
                    "run without --resume to start afresh"
                )
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(identity, indent=1) + "\n")

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str) -> Any | None:
        path = self._path(key)
        return json.loads(path.read_text()) if path.exists() else None

    def add(self, key: str, value: Any) -> None:
        tmp = self._path(key).with_suffix(".tmp")
        tmp.write_text(json.dumps(value))
        tmp.replace(self._path(key))  # a kill mid-write leaves no half unit

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def needs_own_ray(workers: int) -> bool:
    """Whether the benchmark starts its own Ray; a running one must have exactly ``workers`` CPUs."""
    if not ray.is_initialized():
        return True
    cpus = ray.cluster_resources().get("CPU")
    if cpus != workers:
        raise UsageError(f"the running Ray has {cpus} CPUs; this needs {workers}")
    return False
