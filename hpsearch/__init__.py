"""hpsearch: hyperparameter search for small image classifiers (Ray Tune + Optuna + MLflow).

The repository keeps its parts in top-level folders (search/, trainables/, spaces/, reports/,
plumbing/, benchmarks/); installed, they are the subpackages ``hpsearch.search`` and so on, so
that this project puts one name, ``hpsearch``, into site-packages.
"""

__version__ = "0.1.0"
