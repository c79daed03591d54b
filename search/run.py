"""Search a space's hyperparameters: Ray Tune runs Optuna TPE trials, --scheduler stops poor ones.

    python search/run.py --space spaces/font.py --gpus 4
    python search/run.py --space spaces/font.py --gpus 0 --quick     # a 2-core CPU, ~15 min

The seed's baseline is always trial 0. Results, the Optuna study and a trial table go to
--results-dir/<name>; an interrupted search continues with --resume.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
import uuid
from pathlib import Path

import torch
from ray import tune
from ray.tune import ResultGrid

from hpsearch.plumbing import tags as tag
from hpsearch.plumbing.cli import ArgumentParser, run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.plumbing.servers import reachable, redact, tracking_server
from hpsearch.plumbing.ui import ui_hint
from hpsearch.reports.leaderboard import write_report
from hpsearch.search import storage
from hpsearch.search.cluster import check_cluster, cluster_gpus, quiet_libraries, start_ray
from hpsearch.search.data import load_space_data
from hpsearch.search.interrupt import StopWatch, interrupted
from hpsearch.search.plan import (
    MEASURE_TIMEOUT_S,
    QUICK_WALL_S,
    Plan,
    measure_epoch_where_trials_run,
    plan_reports,
    wall_estimate_s,
)
from hpsearch.search.progress import LiveView
from hpsearch.search.provenance import DataIdentity
from hpsearch.search.searcher import STUDY_FILE, close_study
from hpsearch.search.space import Space, load_space
from hpsearch.search.stopping import SCHEDULERS, stopping_rule
from hpsearch.search.summary import top_finished, trials_frame
from hpsearch.search.tracking import MlflowTracker
from hpsearch.search.trainable import keep_checkpoints
from hpsearch.search.tuner import SearchSettings, build_tuner, concurrent_slots, restore_tuner
from hpsearch.trainables.compiled import COMPILE_MODES
from hpsearch.trainables.data.splits import Splits


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(__doc__)
    p.add_argument(
        "--space", required=True, help="a space file, or a built-in space's name (e.g. font, mnist)"
    )
    g = p.add_argument_group("resources")
    g.add_argument("--gpus", type=float, help="GPUs for the search (default: all on this machine; 0 = CPU)")
    g.add_argument("--address", help="join a running Ray cluster (ADDR or 'auto') instead of starting one")
    g.add_argument(
        "--wait-for-gpus",
        type=float,
        default=0.0,
        metavar="S",
        help="with --address and --gpus: wait up to S seconds for an autoscaling cluster to add its GPU "
        "nodes (default 0: refuse at once)",
    )
    g.add_argument("--gpus-per-trial", type=float, help="default 1 with GPUs; 0.5 packs two trials on a GPU")
    g.add_argument("--cpus-per-trial", type=float, default=1.0, help="default 1")
    g.add_argument(
        "--max-failures",
        type=int,
        default=0,
        metavar="N",
        help="retry a failed trial (its worker or node lost) up to N times, each from its latest report's "
        "checkpoint (default 0: a failed trial stays failed, and trials checkpoint only their model)",
    )
    g.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default="auto",
        help="torch.compile GPU trials: auto (the model families it was measured to pay for), on, off",
    )
    g = p.add_argument_group("how long")
    g.add_argument("--trials", type=int, help="number of trials (default 20, or the space's quick count)")
    g.add_argument("--time-budget", type=float, help="seconds for the whole search")
    g.add_argument(
        "--trial-budget",
        type=float,
        help="seconds per trial, its set-up and validation included (default: the space's)",
    )
    g.add_argument(
        "--max-epochs", type=int, help="every trial's horizon in epochs (default: the space's MAX_EPOCHS)"
    )
    g.add_argument(
        "--reports-per-epoch",
        type=int,
        help="rungs finer than an epoch: report N times an epoch (default: measured here on the baseline;"
        " more than 1 when an epoch is long next to the trial budget)",
    )
    g.add_argument(
        "--quick", action="store_true", help="the space's quick preset: smaller data, fewer epochs"
    )
    g = p.add_argument_group("scheduler")
    g.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default="rank-asha",
        help="what stops trials early: rank-asha (ASHA whose rungs stop trials only once their ranking "
        "has predicted the next rung's), Ray's stock asha or hyperband, fifo (none); default rank-asha",
    )
    g.add_argument(
        "--grace-period", type=int, default=1, help="reports before ASHA may stop a trial (default 1)"
    )
    g.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA's reduction factor (default 3)")
    g = p.add_argument_group("where")
    g.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="where datasets are read, never written (default ./data)",
    )
    g.add_argument(
        "--cache-dir",
        type=Path,
        help="where prepared datasets and downloads are kept (default ./data/cache, whatever --data-dir)",
    )
    g.add_argument("--results-dir", type=Path, default=Path("results"), help="default ./results")
    g.add_argument(
        "--storage-path",
        help="where the search's state and trials' checkpoints go, for every node to reach: s3://..., "
        "gs://..., file:///... or a shared (NFS) path (default: the results dir, this machine's only)",
    )
    g.add_argument("--name", help="the search's name (default <task>-<date>-<time>)")
    g.add_argument("--resume", action="store_true", help="continue the search --name (default: the latest)")
    g.add_argument("--offline", action="store_true", help="never try to download a missing dataset")
    g.add_argument(
        "--allow-small-split",
        action="store_true",
        help="font data: accept a val or test split of fewer than 5 font families (refused by default)",
    )
    g = p.add_argument_group("tracking")
    g.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: MLflow's own, sqlite:///mlflow.db here)"
    )
    g.add_argument("--experiment", help="MLflow experiment (default: the task's name)")
    g.add_argument(
        "--keep-models",
        type=int,
        default=3,
        metavar="K",
        help="log the K best trials' models to MLflow as they finish, delete the other checkpoints "
        "(default 3; 0 = none)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace, space: Space) -> SearchSettings:
    quick = space.quick if args.quick else {}
    gpus_per_trial = args.gpus_per_trial if args.gpus_per_trial is not None else (1.0 if args.gpus else 0.0)
    settings = SearchSettings(
        trials=_given(args.trials, quick.get("trials", 20)),
        time_budget_s=args.time_budget,
        trial_budget_s=_given(args.trial_budget, quick.get("budget_s", space.budget_s)),
        max_epochs=_given(args.max_epochs, quick.get("max_epochs", space.max_epochs)),
        reports_per_epoch=_given(args.reports_per_epoch, quick.get("reports_per_epoch", 1)),
        gpus_per_trial=gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        scheduler=args.scheduler,
        seed=args.seed,
        compile=args.compile,
        storage_path=storage.storage_path(args.storage_path) if args.storage_path else None,
        max_failures=args.max_failures,
        metric=space.metric,
        mode=space.mode,
    )
    checks = [
        (settings.trials >= 1, "--trials must be at least 1"),
        (settings.time_budget_s is None or settings.time_budget_s > 0, "--time-budget must be positive"),
        (settings.trial_budget_s > 0, "--trial-budget must be positive"),
        (settings.max_epochs >= 1, "--max-epochs must be at least 1"),
        (settings.reports_per_epoch >= 1, "--reports-per-epoch must be at least 1"),
        (args.gpus is None or args.gpus >= 0, "--gpus must not be negative"),
        (
            settings.gpus_per_trial >= 0 and settings.cpus_per_trial > 0,
            "per-trial resources must be positive",
        ),
        (not args.gpus or settings.gpus_per_trial <= args.gpus, "--gpus-per-trial is more than --gpus"),
        (settings.grace_period >= 1, "--grace-period must be at least 1"),
        (settings.reduction_factor > 1, "--reduction-factor must be greater than 1"),
        (args.keep_models >= 0, "--keep-models must not be negative"),
        (args.wait_for_gpus >= 0, "--wait-for-gpus must not be negative"),
        (not args.wait_for_gpus or args.address, "--wait-for-gpus waits for a cluster: give --address"),
        (not args.wait_for_gpus or args.gpus, "--wait-for-gpus needs --gpus N, the GPUs to wait for"),
        (settings.max_failures >= 0, "--max-failures must not be negative"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    return settings


def experiment_dir_for(args: argparse.Namespace, space: Space) -> Path:
    given = storage.storage_path(args.storage_path) if args.storage_path else None
    if not args.resume:
        name = args.name or f"{space.task.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = args.results_dir / name
        if (path / "tuner.pkl").exists() or given and storage.started(given, path):
            raise UsageError(
                f"a search named {name!r} exists in {args.results_dir}; pass --resume to continue it"
            )
        return path
    if args.name:
        path = args.results_dir / args.name
    else:
        # By its record: a search kept in other storage has no tuner.pkl here.
        records = args.results_dir.glob(f"{space.task.name}-*/{RECORD}")
        searches = [p.parent for p in sorted(records, key=lambda p: p.stat().st_mtime)]
        earlier = [p for p in searches if (p / "tuner.pkl").exists() or _recorded_storage(p)]
        if not earlier:
            raise UsageError(f"no earlier {space.task.name} search in {args.results_dir} to resume")
        path = earlier[-1]
    where = given or _recorded_storage(path)
    if not storage.started(where, path):
        elsewhere = "" if where else "; a search kept in other storage needs its --storage-path"
        raise UsageError(f"nothing to resume at {storage.search_uri(where, path)} (no tuner.pkl){elsewhere}")
    if where:  # resumed on another machine: the driver's files come back from the storage
        storage.fetch(where, path, DRIVER_FILES)
    return path


def _recorded_storage(path: Path) -> str | None:
    record = path / RECORD
    return json.loads(record.read_text())["settings"].get("storage_path") if record.exists() else None


RECORD = "search.json"  # the settings a search was started with, which --resume keeps
# Options a resumed search takes from its record, not from the command line.
RECORDED = ("quick", "data_dir", "cache_dir", "offline", "tracking_uri", "experiment")
DRIVER_FILES = (RECORD, STUDY_FILE)  # what a search resumed elsewhere needs beside Tune's state


@dataclasses.dataclass
class SearchJob:
    """A search once set up: everything ``fit`` and ``finish`` need, and nothing started yet."""

    args: argparse.Namespace
    space: Space
    settings: SearchSettings
    data: Splits
    experiment_dir: Path
    tracker: MlflowTracker
    tuner: tune.Tuner
    started: float  # time.monotonic() at the start: the wall time reported includes the set-up


def main(argv: list[str] | None = None) -> int:
    job = set_up(parse_args(argv), argv)
    results = fit(job)
    code = finish(job, results)
    if interrupted():
        args, name = job.args, job.experiment_dir.name
        again = ["python", "search/run.py", "--space", args.space, "--resume", "--name", name]
        again += ["--results-dir", str(args.results_dir)] if args.results_dir != Path("results") else []
        again += ["--storage-path", job.settings.storage_path] if job.settings.storage_path else []
        print(
            f"interrupted with {job.settings.trials - len(results)} trial(s) not started and the running "
            f"ones cut short; continue with: {shlex.join(again)}",
            file=sys.stderr,
        )
        return 130  # as a shell reports a command ended by Ctrl-C
    return code


def set_up(args: argparse.Namespace, argv: list[str] | None = None) -> SearchJob:
    """Every check, the data, Ray, the plan and the tuner: a user's mistake fails here, in one line."""
    quiet_libraries()
    space = load_space(args.space)
    if args.gpus is None and not args.address:
        args.gpus = float(torch.cuda.device_count())
    server = tracking_server(args.tracking_uri)
    if server and not reachable(server):
        raise UsageError(f"the MLflow server at {redact(server)} does not answer (--tracking-uri)")
    experiment_dir = experiment_dir_for(args, space)
    if args.resume:
        settings = resumed_settings(args, space, experiment_dir, argv)
    else:
        settings = settings_from(args, space)

    # Data first, on the driver: a missing dataset fails here, before Ray starts.
    started = time.monotonic()
    data = load_space_data(
        space,
        args.data_dir,
        cache_dir=args.cache_dir,
        quick=args.quick,
        download=not args.offline,
        allow_small_split=args.allow_small_split,
    )
    identity = DataIdentity.of(data)  # tags every run, so a retrain can tell whether its data is this
    start_ray(args.gpus, args.address)
    if args.gpus is None:
        # Joined a cluster without --gpus: use its GPUs, as a local search uses the machine's.
        args.gpus = cluster_gpus()
        if args.gpus_per_trial is None and not args.resume:
            settings = dataclasses.replace(settings, gpus_per_trial=1.0 if args.gpus else 0.0)
    check_cluster(settings, args.gpus, args.wait_for_gpus)
    storage.check_shared(settings.storage_path, experiment_dir)
    if not args.resume:
        # Timed where trials run (Ray is up), and recorded with the trials' resources as resolved.
        plan = plan_search(args, space, settings, data)
        settings = dataclasses.replace(settings, reports_per_epoch=plan.reports_per_epoch)
        write_record(experiment_dir, args, settings)
    print_plan(
        space,
        settings,
        data,
        experiment_dir,
        None if args.resume else plan,
        quick=args.quick,
        spent_s=time.monotonic() - started,
    )
    # After every check: a user's mistake is one line on stderr, and nothing before it.
    print(f"data: {identity.source} (digest {identity.digest})", file=sys.stderr)

    command = redact(shlex.join(["python", "search/run.py", *(sys.argv[1:] if argv is None else argv)]))
    tracker = MlflowTracker(
        space,
        settings,
        experiment_dir,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        command=command,
        quick=args.quick,
        data=identity,
        search_id=json.loads((experiment_dir / RECORD).read_text()).get("search_id"),
        keep_models=args.keep_models,  # logged as trials finish, the final K at the end
    )
    if args.resume:
        # Tune runs the callbacks it pickled with the search; they find their MLflow runs by tags.
        tuner = restore_tuner(space, settings, data, experiment_dir)
    else:
        view = LiveView(
            space.metric, space.mode, settings.trials, settings.time_budget_s, settings.stopper_budget_s
        )
        callbacks = [view, tracker, StopWatch(settings.time_budget_s)]
        if settings.storage_path:  # --resume elsewhere finds the driver's files there too
            callbacks.append(storage.CopyToStorage(settings.storage_path, experiment_dir, DRIVER_FILES))
        tuner = build_tuner(space, settings, data, experiment_dir, callbacks=callbacks)
    return SearchJob(args, space, settings, data, experiment_dir, tracker, tuner, started)


def fit(job: SearchJob) -> ResultGrid:
    """Run the trials; a search that ends by itself closes its Optuna study."""
    results = job.tuner.fit()
    if not interrupted():
        # (An interrupted search's running trials run again on --resume, as the same Optuna trials.)
        close_study(job.experiment_dir)
    return results


def finish(job: SearchJob, results: ResultGrid) -> int:
    """The trial table, the summary, the leaderboard and the kept models; the exit code."""
    args, space, experiment_dir, tracker = job.args, job.space, job.experiment_dir, job.tracker
    frame = trials_frame(results, space, job.settings)
    frame.to_csv(experiment_dir / "trials.csv", index=False)
    # What the scheduler Tune ran did (on --resume, the one restored with the search).
    rule = stopping_rule(getattr(job.tuner, "scheduler", None))
    report_summary(frame, space, experiment_dir, time.monotonic() - job.started, rule)
    if rule:  # which rungs stopped trials, and (rank-asha) the rank correlations that say why
        tracker.tag_search(tag.STOPPING_RULE, rule)
    report_dir = experiment_dir / "report"
    report_command = (
        f"python reports/leaderboard.py --experiment {args.experiment or space.task.name} "
        f"--name {experiment_dir.name} --out {report_dir}"
    )
    try:
        write_report(
            args.tracking_uri,
            args.experiment or space.task.name,
            experiment_dir.name,
            report_dir,
            command=report_command,
        )
    except UsageError as e:  # the search itself is done and kept: say so, and how to report later
        print(
            f"warning: no leaderboard ({e}); write it later with: {redact(report_command)}", file=sys.stderr
        )
    best_path = experiment_dir / "best.json"
    best = json.loads(best_path.read_text()) if best_path.exists() else {}
    # The K best finished trials keep their checkpoints and become MLflow models; the rest are deleted.
    models = keep_checkpoints(results, top_finished(frame, args.keep_models)["trial_id"])
    # (trials.csv and the Optuna journal too: a leaderboard can be made from MLflow alone.)
    files = [best_path, experiment_dir / "trials.csv", experiment_dir / STUDY_FILE, report_dir]
    failure = None if interrupted() else nothing_finished(frame)
    tracker.finish(best, files, interrupted=interrupted(), models=models, failure=failure)
    print(f"leaderboard: {report_dir / 'leaderboard.md'}", file=sys.stderr)
    print(ui_hint(args.tracking_uri, tracker.experiment_id), file=sys.stderr)
    experiment = args.experiment or space.task.name
    store = f" --tracking-uri {args.tracking_uri}" if args.tracking_uri else ""
    export = f"python search/export.py --experiment {experiment} --name {experiment_dir.name}{store}"
    if failure:  # no best to take away; an interrupted search says how to go on instead (main)
        print(f"search failed: {failure}; every trial is in {experiment_dir / 'trials.csv'}", file=sys.stderr)
        return SEARCH_FAILED
    print(f"take the best away: {redact(export)}", file=sys.stderr)
    return 0


# The search ran and found nothing: an exit code of its own, not a user's mistake (2) nor Ctrl-C (130).
SEARCH_FAILED = 1


def nothing_finished(frame) -> str | None:
    """Why no trial of ``frame`` finished (so none is ranked), in words; None if one did."""
    if len(top_finished(frame, 1)):
        return None
    fates = ", ".join(f"{n} {fate}" for fate, n in frame["fate"].value_counts().items()) if len(frame) else ""
    why = f"no trial finished ({fates or 'none ran'})"
    errors = [e for e in frame.get("error", []) if e]
    return why + (f"; one trial's error: {errors[0]}" if errors else "")


def plan_search(args: argparse.Namespace, space: Space, settings: SearchSettings, data) -> Plan:
    """How often trials report: as asked, or measured on the baseline with one trial's resources,
    where the trials will run (search/plan.py)."""
    quick = space.quick if args.quick else {}
    if args.reports_per_epoch is not None or "reports_per_epoch" in quick:
        return Plan(None, settings.reports_per_epoch, "as asked")
    timed = measure_epoch_where_trials_run(space, data, settings)
    if timed is None:
        why = f"no node with a trial's resources ran the baseline's timing within {MEASURE_TIMEOUT_S:.0f} s"
        return Plan(None, 1, f"once an epoch ({why}: not measured)")
    epoch, device = timed
    k = plan_reports(epoch, settings)
    how = "once an epoch" if k == 1 else f"{k} times an epoch, so that the scheduler has rungs to compare"
    measured = (
        f"an epoch of the baseline takes ~{epoch.train_s:.0f} s on a trial's {device}, "
        f"a validation pass {epoch.val_s:.0f} s"
    )
    return Plan(epoch, k, f"{how} ({measured})")


def print_plan(
    space: Space,
    settings: SearchSettings,
    data,
    experiment_dir: Path,
    plan: Plan | None,
    *,
    quick: bool = False,
    spent_s: float = 0.0,
) -> None:
    slots = concurrent_slots(settings) or 1
    print(
        f"{space.task.name}: {len(data.train):,} train / {len(data.val):,} val images; "
        f"{settings.trials} trials, {slots} at a time, each over a {settings.max_epochs}-epoch horizon "
        f"within {settings.trial_budget_s:.0f} s -> {experiment_dir}",
        file=sys.stderr,
    )
    if plan is None:
        return
    print(f"reports: {plan.why}", file=sys.stderr)
    wall = wall_estimate_s(plan, settings, slots, spent_s)
    print(f"wall time: at most ~{wall / 60:.0f} min if no trial is stopped early", file=sys.stderr)
    # Only a measured plan knows how long trials take; an unmeasured one assumes whole budgets.
    if quick and plan.epoch is not None and wall > QUICK_WALL_S:
        print(
            f"warning: --quick promises about {QUICK_WALL_S / 60:.0f} min; on this machine the search "
            f"may take up to ~{wall / 60:.0f} min (fewer --trials, a smaller --trial-budget or more "
            f"CPUs bring it down)",
            file=sys.stderr,
        )


def write_record(experiment_dir: Path, args: argparse.Namespace, settings: SearchSettings) -> None:
    experiment_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "search_id": uuid.uuid4().hex,  # this search, not another one that ran under its name here
        "settings": dataclasses.asdict(settings),
        **{key: _jsonable(getattr(args, key)) for key in RECORDED},
    }
    (experiment_dir / RECORD).write_text(json.dumps(record, indent=1) + "\n")


def resumed_settings(
    args: argparse.Namespace, space: Space, experiment_dir: Path, argv: list[str] | None
) -> SearchSettings:
    """The settings the search was started with; an option given now that differs is refused."""
    path = experiment_dir / RECORD
    if not path.exists():
        raise UsageError(f"{experiment_dir} has no {RECORD}: it was not started by this version; start anew")
    record = json.loads(path.read_text())
    given = {token.split("=", 1)[0] for token in (sys.argv[1:] if argv is None else argv)}

    def refuse_change(flag: str, now, then) -> None:
        if flag in given and now != then:
            raise UsageError(f"this search ran with {flag} {then}; --resume keeps it (you gave {now})")

    for key in RECORDED:
        refuse_change(_flag(key), _jsonable(getattr(args, key)), record.get(key))
        then = record.get(key)
        setattr(args, key, Path(then) if key.endswith("_dir") and then is not None else then)
    # (A record from before the settings named the metric and mode: the space's.)
    settings = SearchSettings(**{"metric": space.metric, "mode": space.mode, **record["settings"]})
    asked = settings_from(args, space)
    for field in dataclasses.fields(SearchSettings):
        refuse_change(_flag(field.name), getattr(asked, field.name), getattr(settings, field.name))
    return settings


def _flag(name: str) -> str:
    # The options whose flag is not the setting's name.
    return {"time_budget_s": "--time-budget", "trial_budget_s": "--trial-budget"}.get(
        name, "--" + name.replace("_", "-")
    )


def _jsonable(value):
    return str(value) if isinstance(value, Path) else value


def report_summary(frame, space: Space, experiment_dir: Path, wall_s: float, rule: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    top = top_finished(frame)
    table = Table(title=f"top {len(top)} of {len(frame)} trials ({space.metric}, {space.mode})")
    knobs = [c for c in frame.columns if c.startswith("config/")]
    for col in ["trial_id", space.metric, "fate", "best_epoch", "train_time_s", "baseline"]:
        table.add_column(col)
    for _, row in top.iterrows():
        table.add_row(
            row["trial_id"],
            f"{row[space.metric]:.4f}",
            row["fate"],
            str(row["best_epoch"]),
            f"{row['train_time_s']:.0f}",
            "seed" if row["baseline"] else "",
        )
    console = Console(stderr=True)
    console.print(table)
    counts = frame["fate"].value_counts().to_dict()
    console.print(f"fates: {counts}; wall time {wall_s:.0f} s; results in {experiment_dir}", highlight=False)
    if rule:
        console.print(f"early stopping: {rule}", highlight=False, soft_wrap=True)
    if len(top):
        best = top.iloc[0]
        baseline_rows = frame[frame["baseline"]]
        summary = {
            "task": space.task.name,
            "search": experiment_dir.name,
            space.metric: float(best[space.metric]),
            "baseline_" + space.metric: float(baseline_rows[space.metric].iloc[0])
            if len(baseline_rows)
            else None,
            "trials": len(frame),
            "fates": counts,
            "wall_time_s": round(wall_s, 1),
            "best_trial": best["trial_id"],
            "best_config": {k.removeprefix("config/"): _plain(best[k]) for k in knobs},
            "stopping_rule": rule,
        }
        (experiment_dir / "best.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary))


def _given(value, default):
    # `0` and `-5` are values to check, not "not given".
    return default if value is None else value


def _plain(value):
    return value.item() if hasattr(value, "item") else value


if __name__ == "__main__":
    run_main(main)
