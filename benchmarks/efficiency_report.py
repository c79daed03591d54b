"""The search-efficiency benchmark's events, what they add up to, and its report.

Every method's run leaves one list of events on one clock (seconds since the run started): a
trial starts, reports an epoch (its ``val_acc``), or ends with a fate. Everything the report
says (best-so-far curves, time to the target, trial counts) is computed here from those events,
counting only what happened within the wall budget.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hpsearch.benchmarks.machine import write_markdown

START, EPOCH, END = "start", "epoch", "end"
# End fates: the training loop's own ends, a scheduler's or pruner's stop, a crash.
FINISHED = ("completed", "budget")  # ran to its own end: the "trials completed"
PRUNED, DIVERGED, FAILED = "pruned", "diverged", "failed"
NOT_REACHED = "not reached"
GRID_POINTS = 400  # time grid of the mean curve
COUNTS = ("started", "finished", "pruned", "cut", "failed")  # Tally's trial counts, in table order


@dataclass(frozen=True)
class Event:
    trial: int  # unique within one run of one method
    kind: str  # START, EPOCH or END
    t_s: float  # seconds since the run's clock origin
    epoch: int = 0
    val_acc: float = math.nan
    fate: str = ""  # END only


@dataclass(frozen=True)
class Tally:
    """One run of one method, within the wall budget."""

    best: float  # best val_acc of any epoch reported (nan: none)
    to_target_s: float | None  # None: never reached
    first_result_s: float | None
    started: int
    finished: int  # ran to their own end (all epochs, or their own time budget)
    pruned: int
    cut: int  # still running when the wall budget ran out
    failed: int  # diverged or crashed


def best_so_far(events: Iterable[Event], wall_s: float) -> list[tuple[float, float]]:
    """(time, best val_acc so far) at every epoch that raised the best, up to ``wall_s``."""
    curve: list[tuple[float, float]] = []
    for e in sorted((e for e in events if e.kind == EPOCH and e.t_s <= wall_s), key=lambda e: e.t_s):
        # A diverged epoch reports nan: it never counts as reaching anything.
        if math.isfinite(e.val_acc) and (not curve or e.val_acc > curve[-1][1]):
            curve.append((e.t_s, e.val_acc))
    return curve


def time_to_target(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    return next((t for t, best in curve if best >= target), None)


def tally(events: Sequence[Event], wall_s: float, target: float) -> Tally:
    curve = best_so_far(events, wall_s)
    started = {e.trial for e in events if e.kind == START and e.t_s <= wall_s}
    ended = {e.trial: e.fate for e in events if e.kind == END and e.t_s <= wall_s}
    fates = list(ended.values())
    return Tally(
        best=curve[-1][1] if curve else math.nan,
        to_target_s=time_to_target(curve, target),
        first_result_s=curve[0][0] if curve else None,
        started=len(started | set(ended)),
        finished=sum(f in FINISHED for f in fates),
        pruned=fates.count(PRUNED),
        cut=len(started - set(ended)),
        failed=sum(f in (DIVERGED, FAILED) for f in fates),
    )


def curve_on_grid(curve: Sequence[tuple[float, float]], grid: np.ndarray) -> np.ndarray:
    """The step function of ``curve`` at each grid time; nan before its first result."""
    if not curve:
        return np.full(len(grid), np.nan)
    times, values = np.array([t for t, _ in curve]), np.array([v for _, v in curve])
    at = np.searchsorted(times, grid, side="right") - 1
    return np.where(at >= 0, values[np.clip(at, 0, None)], np.nan)


def fmt_seconds(t: float | None) -> str:
    return NOT_REACHED if t is None else f"{t:.0f} s"


def median_time(times: Sequence[float | None]) -> str:
    # Never reaching the target counts as taking forever, so the median stays honest.
    value = statistics.median(math.inf if t is None else t for t in times)
    return NOT_REACHED if math.isinf(value) else f"{value:.0f} s"


def mean_std(values: Sequence[float], digits: int = 4) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "no result"
    if len(finite) == 1:
        return f"{finite[0]:.{digits}f}"
    return f"{statistics.mean(finite):.{digits}f} ± {statistics.stdev(finite):.{digits}f}"


# Raw events, one CSV row each, so the figures and tables can be redrawn without a rerun.


def write_events(path: Path, runs: dict[tuple[str, int], list[Event]]) -> None:
    names = [f.name for f in fields(Event)]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "seed", *names])
        writer.writeheader()
        for (method, seed), events in runs.items():
            for e in sorted(events, key=lambda e: e.t_s):
                writer.writerow({"method": method, "seed": seed, **asdict(e)})


def read_events(path: Path) -> dict[tuple[str, int], list[Event]]:
    runs: dict[tuple[str, int], list[Event]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            event = Event(
                int(row["trial"]),
                row["kind"],
                float(row["t_s"]),
                int(row["epoch"]),
                float(row["val_acc"]),
                row["fate"],
            )
            runs.setdefault((row["method"], int(row["seed"])), []).append(event)
    return runs


def plot_curves(
    path: Path,
    runs: dict[tuple[str, int], list[Event]],
    labels: dict[str, str],
    wall_s: float,
    target: float,
) -> None:
    """Best val_acc so far vs wall time: the mean over seeds bold, each seed faint."""
    fig = Figure(figsize=(7.5, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    grid = np.linspace(0, wall_s, GRID_POINTS)
    lows = []
    for i, (method, label) in enumerate(labels.items()):
        color = f"C{i}"
        curves = [best_so_far(ev, wall_s) for (m, _), ev in runs.items() if m == method]
        for curve in curves:
            if curve:
                ts, vs = zip(*[*curve, (wall_s, curve[-1][1])], strict=True)
                ax.step(ts, vs, where="post", color=color, alpha=0.25, lw=1)
        if curves:
            # The mean exists only where every seed has a result: no jump as seeds join.
            mean = np.mean([curve_on_grid(c, grid) for c in curves], axis=0)
            ax.plot(grid, mean, color=color, lw=2.2, label=f"{label} (mean of {len(curves)})")
            half = mean[grid >= wall_s / 2]
            lows.extend(half[np.isfinite(half)][:1])
    ax.axhline(target, color="black", ls="--", lw=1, label=f"target {target:g}")
    # Early results of bad configs sit near chance (0.1); the comparison happens near the top.
    low = min([target - 0.02, *lows]) - 0.02
    ax.set_ylim(max(0.0, low), 1.0)
    ax.set_xlim(0, wall_s)
    ax.set_xlabel("wall time since the method started (s)")
    ax.set_ylabel("best val_acc so far")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def write_report(
    out: Path,
    *,
    title: str,
    command: str,
    settings: list[str],
    labels: dict[str, str],
    runs: dict[tuple[str, int], list[Event]],
    wall_s: float,
    target: float,
    notes: Sequence[str] = (),
) -> list[Path]:
    """The Markdown report, the figure beside it (.png) and the raw events (_events.csv).

    ``notes`` are lines said under the summary table.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png, raw = out.with_suffix(".png"), out.with_name(out.stem + "_events.csv")
    plot_curves(png, runs, labels, wall_s, target)
    write_events(raw, runs)
    seeds = sorted({s for _, s in runs})
    tallies = {key: tally(ev, wall_s, target) for key, ev in runs.items()}
    lines = [
        "## Setting (fixed before the runs)",
        "",
        *[f"- {s}" for s in settings],
        "",
        f"## Summary over seeds {', '.join(map(str, seeds))}",
        "",
        "Best val_acc: mean ± sample std over seeds. Time to target: the median over seeds, a seed "
        f"that never reached it counting as never. Trial counts: mean per seed, within the {wall_s:.0f} s.",
        "",
        f"| method | best val_acc at {wall_s:.0f} s | reached {target:g} | time to {target:g} (median) "
        "| first result | trials started | finished | pruned | cut at the wall | diverged/failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, label in labels.items():
        ts = [tallies[(method, s)] for s in seeds if (method, s) in tallies]
        if not ts:
            continue
        reached = sum(t.to_target_s is not None for t in ts)
        firsts = [t.first_result_s for t in ts if t.first_result_s is not None]
        avg = {name: statistics.mean(getattr(t, name) for t in ts) for name in COUNTS}
        lines.append(
            f"| {label} | {mean_std([t.best for t in ts])} | {reached}/{len(ts)} | "
            f"{median_time([t.to_target_s for t in ts])} | "
            f"{f'{statistics.mean(firsts):.0f} s' if firsts else 'none'} | "
            + " | ".join(f"{avg[name]:.1f}" for name in COUNTS)
            + " |"
        )
    lines += [
        *(["", *notes] if notes else []),
        "",
        f"![best val_acc so far vs wall time]({png.name})",
        "",
        "Faint: each seed's best val_acc so far; bold: their mean, drawn from when every seed has a result.",
        "",
        f"Raw events (every trial start, epoch and end, also past the budget): `{raw.name}`.",
        "",
        "## Per seed",
        "",
        "| seed | method | best val_acc | time to target | first result | started | finished | pruned "
        "| cut | diverged/failed |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seed in seeds:
        for method, label in labels.items():
            if (method, seed) not in tallies:
                continue
            t = tallies[(method, seed)]
            best = f"{t.best:.4f}" if math.isfinite(t.best) else "no result"
            first = "none" if t.first_result_s is None else f"{t.first_result_s:.0f} s"
            lines.append(
                f"| {seed} | {label} | {best} | {fmt_seconds(t.to_target_s)} | {first} | {t.started} | "
                f"{t.finished} | {t.pruned} | {t.cut} | {t.failed} |"
            )
    write_markdown(out, title, command, lines)
    return [out, png, raw]
