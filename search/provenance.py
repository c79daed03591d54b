"""Ray-free helpers every MLflow writer here shares: the code version, the data's identity, and
whether a server is up."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

import hpsearch.plumbing.servers  # noqa: F401  (MLflow's retry defaults, before any client here is made)
from hpsearch.plumbing import tags as tag
from hpsearch.trainables.data.splits import Splits

REPO = Path(__file__).resolve().parent.parent


def code_version(repo: Path = REPO) -> str:
    """The git commit of ``repo``, with ``-dirty`` if tracked files differ from it; else "unknown"."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        # A sha alone would claim code that did not run: uncommitted edits are part of provenance.
        diff = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=repo, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if diff.returncode == 1 else sha


DATA_DIGEST_TAG, DATA_SOURCE_TAG = tag.DATA_DIGEST, tag.DATA_SOURCE
# A data digest is this many hex digits of Splits.digest() (64 bits: no two datasets a team
# compares will share one), short enough for MLflow's dataset digest field (36 characters).
DIGEST_CHARS = 16


@dataclass(frozen=True)
class DataIdentity:
    """Which data a run saw: the digest of its bytes, and where it came from in words."""

    digest: str
    source: str

    @classmethod
    def of(cls, data: Splits) -> DataIdentity:
        return cls(data.digest()[:DIGEST_CHARS], data.source or "unknown")

    def tags(self) -> dict[str, str]:
        return {DATA_DIGEST_TAG: self.digest, DATA_SOURCE_TAG: self.source[:5000]}

    def dataset_input(self, name: str) -> DatasetInput:
        """The data as an MLflow dataset input (the runs table's Dataset column): digest and source
        only, never the images. The source type is "code": our loaders made it."""
        source = CodeDatasetSource({DATA_SOURCE_TAG: self.source[:5000]}).to_json()
        dataset = Dataset(name, self.digest, source_type="code", source=source)
        return DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, "training")])


# MLflow 3's UI opens an experiment without this tag on its GenAI overview (no runs, a popup); with
# it, on the runs table of a model-training experiment.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(client: mlflow.MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created (as a model-training experiment) if need be."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags=EXPERIMENT_KIND)
        except Exception:
            experiment = client.get_experiment_by_name(name)  # another process made it meanwhile
            if experiment is None:
                raise
    if not any(experiment.tags.get(k) for k in EXPERIMENT_KIND):
        for key, value in EXPERIMENT_KIND.items():
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id
