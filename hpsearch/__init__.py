"""hpsearch: hyperparameter search for small image classifiers (Ray Tune + Optuna + MLflow).

The repository keeps its parts in top-level folders (search/, trainables/, spaces/, reports/,
plumbing/, benchmarks/); installed, they are the subpackages ``hpsearch.search`` and so on, so
that this project puts one name, ``hpsearch``, into site-packages.

From Python::

    import hpsearch
    result = hpsearch.run_search("font", trials=8, gpus=0, quick=True)
    result.best_config, result.best_metric, result.trials, result.experiment_dir

and from a shell the same search is ``hpsearch run --space font --trials 8 --gpus 0 --quick``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["SearchResult", "__version__", "run_search"]

if TYPE_CHECKING:
    from hpsearch.api import SearchResult, run_search


def __getattr__(name: str):
    # Imported on first use: every `import hpsearch.<part>` runs this file, Ray's trial workers
    # included, and the API pulls in torch, Ray and MLflow.
    if name in ("SearchResult", "run_search"):
        from hpsearch import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")
