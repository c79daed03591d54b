"""Export a search's best configurations from MLflow, one YAML file each, to retrain elsewhere.

    python search/export.py                                  # the latest search's best, anywhere
    python search/export.py --experiment font --top 3        # the 3 best of the latest font search
    python search/export.py --experiment font --name font-20261123-120000 --out exports/font

Ranks as the leaderboard does: by the best epoch's metric, among trials trained to their own
end (ASHA-pruned ones are not candidates). Writes best.yaml (rank 1), rank2.yaml, ... with
every config value, the metric reached, the MLflow run ids, the code version and the digest and
source of the search's data, and beside each the weights its trial kept (best.pt, rank2.pt, ...:
a state_dict, fetched from the trial's MLflow model) where the search kept its model
(`search/run.py --keep-models K`, default 3).
The config's `epochs` is the horizon the trial's schedule ran over. Then
`python search/predict.py DIR image.png` classifies pictures with the kept weights,
`python search/train.py --config DIR/best.yaml` retrains it and evaluates on test, and
`python search/ensemble.py --config DIR` ensembles them. Default output: exports/<search>/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow.artifacts
import pandas as pd
import yaml
from mlflow import MlflowClient

from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.cli import ArgumentParser, run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.reports.runs import SearchRuns, add_search_arguments, latest_search, load_search, open_client
from hpsearch.search.exported import ExportedConfig, write_exported
from hpsearch.search.tracking import MODEL_TAG, global_tracking_uri
from hpsearch.search.trainable import INFO_FILE, MODEL_FILE
from hpsearch.trainables.fates import is_number

DEFAULT_OUT = Path("exports")


def file_name(rank: int, suffix: str = ".yaml") -> str:
    return ("best" if rank == 1 else f"rank{rank}") + suffix


def export_search(
    client: MlflowClient, experiment: str, search: str, top: int, out_dir: Path, *, command: str
) -> list[Path]:
    """Write the ``top`` best finished trials of ``search`` into ``out_dir``; return the paths."""
    runs = load_search(client, experiment, search)
    ranked = runs.finished().dropna(subset=["best"]).head(top)
    if ranked.empty:
        raise UsageError(f"search {search!r} has no trial trained to its own end: nothing to export")
    params = runs.parent.data.params
    out_dir = Path(out_dir)
    # Earlier exports of a longer --top would otherwise leave stale rankN files to be ensembled.
    stale_files = [
        out_dir / "best.yaml",
        out_dir / "best.pt",
        *out_dir.glob("rank*.yaml"),
        *out_dir.glob("rank*.pt"),
    ]
    for stale in stale_files:
        stale.unlink(missing_ok=True)
    paths = []
    for rank, (_, row) in enumerate(ranked.iterrows(), start=1):
        run = client.get_run(row["run_id"])
        config = _trial_config(client, row["run_id"])
        horizon = run.data.metrics.get("horizon_epochs")  # the last report's: as the schedule ran
        if is_number(horizon) and horizon > 0:
            config["epochs"] = int(horizon) if float(horizon).is_integer() else float(horizon)
        kept = _fetch_weights(client, run.data.tags.get(MODEL_TAG), out_dir / file_name(rank, ".pt"))
        exported = ExportedConfig(
            task=runs.parent.data.tags.get(tag.TASK, experiment),
            config=config,
            space=params.get("space", ""),
            quick=params.get("quick") == "True",
            budget_s=float(params.get("trial_budget_s", 600.0)),
            metric=runs.metric,
            mode=runs.mode,
            value=float(row["best"]),
            best_epoch=int(row["best_epoch"]),
            rank=rank,
            fate=row["fate"],
            baseline=bool(row["baseline"]),
            experiment=experiment,
            search=search,
            search_run_id=runs.parent.info.run_id,
            run_id=row["run_id"],
            trial_id=row["trial_id"],
            tracking_uri=client.tracking_uri,
            code_version=runs.parent.data.tags.get(tag.CODE_VERSION, "unknown"),
            data_digest=runs.parent.data.tags.get(tag.DATA_DIGEST, ""),
            data_source=runs.parent.data.tags.get(tag.DATA_SOURCE, ""),
            weights=file_name(rank, ".pt") if kept else "",
            classes=list(kept.get("classes", [])) if kept else [],
        )
        path = out_dir / file_name(rank)
        header = f"Exported by `{command}`.\nRetrain: python search/train.py --config {path}"
        if kept:
            header += f"\nClassify pictures: python search/predict.py {path} IMAGE..."
        paths.append(write_exported(exported, path, header))
    _print_table(runs, ranked, paths)
    return paths


def _fetch_weights(client: MlflowClient, model_id: str | None, path: Path) -> dict[str, Any] | None:
    """Copy the weights of the trial's MLflow model to ``path``; return its kept.json, or None if
    the search kept no model for the trial (or it cannot be fetched: then a one-line warning)."""
    if not model_id:
        return None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        location = client.get_logged_model(model_id).artifact_location
        with tempfile.TemporaryDirectory() as tmp, global_tracking_uri(client.tracking_uri):
            uri = f"{location.rstrip('/')}/extra_files"
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
            info = json.loads((folder / INFO_FILE).read_text())
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / MODEL_FILE, path)
            return info
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        print(
            f"warning: the weights of model {model_id} could not be fetched ({first}); "
            f"{path.name} not written",
            file=sys.stderr,
        )
        return None


def _trial_config(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """The trial's resolved config: its config.yaml artifact (exact types), else its params."""
    # MLflow draws a progress bar per download otherwise: three lines of noise per config.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, "config.yaml", tmp)
            config = yaml.safe_load(Path(path).read_text())
            if isinstance(config, dict):
                return config
    except Exception:  # an artifact store out of reach: the params hold the same values as text
        pass
    params = client.get_run(run_id).data.params
    return {k: _param_value(v) for k, v in params.items()}


def _param_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # YAML 1.1 reads "1e-05" as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _print_table(runs: SearchRuns, ranked: pd.DataFrame, paths: list[Path]) -> None:
    for rank, ((_, row), path) in enumerate(zip(ranked.iterrows(), paths, strict=True), start=1):
        seed = " (the seed's baseline)" if row["baseline"] else ""
        time_s = "" if math.isnan(row["train_time_s"]) else f", {row['train_time_s']:.0f} s"
        weights = (path.parent / file_name(rank, ".pt")).is_file()
        print(
            f"{path}: trial {row['trial_id']}, {runs.metric} {row['best']:.4f} at epoch {row['best_epoch']}"
            f" ({row['fate']}{time_s}){seed}{'' if weights else '; no kept weights'}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(__doc__)
    add_search_arguments(p, DEFAULT_OUT)
    p.add_argument("--top", type=int, default=1, help="how many of the best configs (default 1)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.top < 1:
        raise UsageError("--top must be at least 1")
    client = open_client(args.tracking_uri)
    experiment, search = latest_search(client, args.experiment, args.search)
    out_dir = args.out or DEFAULT_OUT / search
    command = shlex.join(["python", "search/export.py", *argv])
    paths = export_search(client, experiment, search, args.top, out_dir, command=command)
    print(f"retrain the best: python search/train.py --config {paths[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
