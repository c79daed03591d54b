"""Ensemble the top exported configs (the MNIST seed's trick): average their softmax outputs on test.

    python search/export.py --experiment mnist --top 3           # writes exports/<search>/*.yaml
    python search/ensemble.py --config exports/<search>          # every YAML in the folder
    python search/ensemble.py --config a.yaml --config b.yaml --train-on-val

Retrains each member (logged to MLflow as a `final` run, as search/train.py --config does),
evaluates it on test, then averages the members' softmax outputs and reports the ensemble's
test accuracy beside each member's. The ensemble itself is logged as a run tagged
`hpsearch.role=ensemble`. The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch
from mlflow.entities import Metric, Param, RunTag
from torch.nn import functional as F

from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.cli import ArgumentParser, add_data_arguments, run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.exported import ExportedConfig, read_exported
from hpsearch.search.mlflow_buffer import BufferedMlflow
from hpsearch.search.provenance import DataIdentity, code_version, experiment_id
from hpsearch.search.retrain import Retrained, load_export_data, retrain, warn_if_other_data
from hpsearch.search.train import epoch_printer
from hpsearch.trainables.loop import pick_device

log = logging.getLogger(__name__)


def config_files(paths: list[Path]) -> list[Path]:
    """The YAML files named, with a folder standing for the export files in it (best first)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.yaml"), key=_rank_order)
            if not found:
                raise UsageError(f"no exported configs (*.yaml) in {path}")
            files.extend(found)
        else:
            files.append(path)
    return files


def _rank_order(path: Path) -> tuple[int, str]:
    # best.yaml, rank2.yaml, ..., rank10.yaml: numeric order, not text order.
    digits = path.stem.removeprefix("rank")
    return (1 if path.stem == "best" else int(digits) if digits.isdigit() else 1_000_000, path.name)


def ensemble_accuracy(probs: list[torch.Tensor], labels: torch.Tensor) -> tuple[float, float]:
    """(loss, accuracy) of the mean of the members' softmax outputs."""
    mean = torch.stack(probs).mean(0)
    loss = F.nll_loss(mean.clamp_min(1e-12).log(), labels).item()
    return loss, (mean.argmax(1) == labels).float().mean().item()


def log_ensemble(
    members: list[Retrained], test_loss: float, test_acc: float, mlflow: BufferedMlflow
) -> str | None:
    """An MLflow run tagged ``hpsearch.role=ensemble``: its members' runs and test accuracies.
    Its id, or None if it could not be logged (a one-line warning says why)."""
    first = members[0].exported
    tags = {
        tag.ROLE: "ensemble",
        tag.TASK: first.task,
        tag.SEARCH: ",".join(sorted({m.exported.search for m in members})),
        tag.MEMBERS: ",".join(m.run_id or "" for m in members),
        tag.CODE_VERSION: code_version(),
    }
    searches = {m.exported.search_run_id for m in members}
    if len(searches) == 1 and "" not in searches:  # one search: show it under that search's run
        tags["mlflow.parentRunId"] = searches.pop()
    now = int(time.time() * 1000)
    metrics = [Metric("test_acc", test_acc, now, 0), Metric("test_loss", test_loss, now, 0)]
    metrics += [Metric(f"member{i}_test_acc", m.test_acc, now, 0) for i, m in enumerate(members, 1)]
    params = [Param(f"member{i}", m.exported.name) for i, m in enumerate(members, 1)]

    def create() -> str:
        client = mlflow.client
        found_id = experiment_id(client, first.experiment or first.task)
        run_id = client.create_run(found_id, tags=tags, run_name=f"ensemble-{len(members)}").info.run_id
        client.log_batch(run_id, metrics=metrics, params=params, tags=[RunTag(tag.SIZE, str(len(members)))])
        client.set_terminated(run_id)
        return run_id

    return mlflow.call("logging the ensemble", create)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(__doc__)
    p.add_argument(
        "--config",
        type=Path,
        action="append",
        required=True,
        help="an exported config, or a folder of them (repeatable); at least two members in all",
    )
    p.add_argument("--gpus", type=float, default=1, help="0 trains on CPU; >0 uses the GPU if present")
    add_data_arguments(p)
    p.add_argument(
        "--trial-budget",
        type=float,
        metavar="SECONDS",
        help="each member's training time, its set-up and validation included (default: the export's)",
    )
    p.add_argument("--budget", dest="trial_budget", type=float, help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--train-on-val", action="store_true", help="train each member on train+val")
    p.add_argument(
        "--full-data", action="store_true", help="the space's whole data even if the search was --quick"
    )
    p.add_argument("--offline", action="store_true", help="never try to download a missing dataset")
    p.add_argument(
        "--space",
        help="the search's space file (or a built-in space's name), if its space is not a built-in one "
        "(an export never runs code it names)",
    )
    p.add_argument(
        "--tracking-uri", help="MLflow store for the runs (default: MLflow's own, sqlite:///mlflow.db here)"
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.trial_budget is not None and args.trial_budget <= 0:
        raise UsageError(f"--trial-budget must be positive, got {args.trial_budget}")
    if args.gpus < 0:
        raise UsageError(f"--gpus must not be negative, got {args.gpus}")
    exports: list[ExportedConfig] = [read_exported(path) for path in config_files(args.config)]
    if len(exports) < 2:
        raise UsageError("an ensemble needs at least two configs (export with --top 3, say)")
    tasks = {e.task for e in exports}
    if len(tasks) > 1:
        raise UsageError(
            f"the configs are of different tasks ({', '.join(sorted(tasks))}): one task per ensemble"
        )
    for exported in exports:
        exported.resolved()  # a stale or broken config fails now, not after the others have trained
    device = pick_device(args.gpus)
    # Members are compared on one test set: the first export's data (all come from one task).
    data = load_export_data(
        exports[0],
        args.data_dir,
        cache_dir=args.cache_dir,
        download=not args.offline,
        full_data=args.full_data,
        space_file=args.space,
    )
    identity = DataIdentity.of(data)
    data = data.to(device)
    # One client for every member's run and the ensemble's: a server down during one member's
    # training gets what it missed during the next. Never an export's own URI: a shared file
    # must not send runs.
    mlflow = None if args.no_mlflow else BufferedMlflow(args.tracking_uri, log=log, work="the ensemble")
    members = []
    for i, exported in enumerate(exports, 1):
        _, config = exported.resolved()
        print(f"member {i}/{len(exports)}: {exported.name} ({exported.search or '?'})", file=sys.stderr)
        warn_if_other_data(exported, identity)  # members may come from searches on other data
        member = retrain(
            exported,
            data,
            device=device,
            seed=config["seed"],
            budget_s=args.trial_budget or exported.budget_s,
            train_on_val=args.train_on_val,
            track=mlflow is not None,
            mlflow=mlflow,
            on_epoch=epoch_printer(config["epochs"]),
            data_identity=identity,
        )
        print(f"member {i}: test_acc {member.test_acc:.4f}", file=sys.stderr)
        members.append(member)

    test_loss, test_acc = ensemble_accuracy([m.test_probs for m in members], data.test.y)
    run_id = None
    if mlflow is not None:
        mlflow.probe_now()  # the last chance to log what a server that went down missed
        run_id = log_ensemble(members, test_loss, test_acc, mlflow)
        mlflow.report_missed()
    best_member = max(m.test_acc for m in members)
    print("", file=sys.stderr)
    for i, m in enumerate(members, 1):
        print(f"  member {i}  {m.exported.name:24s} test_acc {m.test_acc:.4f}", file=sys.stderr)
    print(
        f"  ensemble of {len(members)}  test_acc {test_acc:.4f} "
        f"({test_acc - best_member:+.4f} vs the best member)",
        file=sys.stderr,
    )
    summary = {
        "task": exports[0].task,
        "members": [
            {"config": m.exported.name, "test_acc": m.test_acc, "mlflow_run": m.run_id} for m in members
        ],
        "test_acc": test_acc,
        "test_loss": test_loss,
        "best_member_test_acc": best_member,
        "mlflow_run": run_id,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    run_main(main)
