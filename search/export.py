"""Export a search's best configurations from MLflow, one YAML file each, to retrain elsewhere.

    python search/export.py                                  # the latest search's best, anywhere
    python search/export.py --experiment font --top 3        # the 3 best of the latest font search
    python search/export.py --experiment font --search font-20261123-120000 --out exports/font

Ranks as the leaderboard does: by the best epoch's metric, among trials trained to their own
end (ASHA-pruned ones are not candidates). Writes best.yaml (rank 1), rank2.yaml, ... with
every config value, the metric reached, the MLflow run ids and the code version; then
`python search/train.py --config DIR/best.yaml` retrains it and evaluates on test, and
`python search/ensemble.py --config DIR` ensembles them. Default output: exports/<search>/.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from mlflow import MlflowClient

from reports.runs import SearchRuns, add_search_arguments, latest_search, load_search, open_client
from search.cli import run_main
from search.exported import ExportedConfig, write_exported
from trainables.errors import UsageError

DEFAULT_OUT = Path("exports")


def file_name(rank: int) -> str:
    return "best.yaml" if rank == 1 else f"rank{rank}.yaml"


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
    for stale in [out_dir / "best.yaml", *out_dir.glob("rank*.yaml")]:
        stale.unlink(missing_ok=True)
    paths = []
    for rank, (_, row) in enumerate(ranked.iterrows(), start=1):
        exported = ExportedConfig(
            task=runs.parent.data.tags.get("hpsearch.task", experiment),
            config=_trial_config(client, row["run_id"]),
            space=params.get("space", ""),
            quick=params.get("quick") == "True",
            budget_s=float(params.get("trial_budget_s", 600.0)),
            metric=runs.metric,
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
            code_version=runs.parent.data.tags.get("hpsearch.code_version", "unknown"),
        )
        path = out_dir / file_name(rank)
        header = f"Exported by `{command}`.\nRetrain: python search/train.py --config {path}"
        paths.append(write_exported(exported, path, header))
    _print_table(runs, ranked, paths)
    return paths


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
    for (_, row), path in zip(ranked.iterrows(), paths, strict=True):
        seed = " (the seed's baseline)" if row["baseline"] else ""
        time_s = "" if math.isnan(row["train_time_s"]) else f", {row['train_time_s']:.0f} s"
        print(
            f"{path}: trial {row['trial_id']}, {runs.metric} {row['best']:.4f} at epoch {row['best_epoch']}"
            f" ({row['fate']}{time_s}){seed}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
