"""The names of the project's MLflow tags, in one place (docs/tracking-schema.md says what each holds).

The search writes them (search/tracking.py, search/retrain.py, search/ensemble.py) and the reports,
the exports and the benchmarks read them back: a tag renamed here is renamed for all of them. A
user's MLflow query uses the same names: ``tags.`hpsearch.role` = 'trial'``.
"""

from __future__ import annotations

# Every run
ROLE = "hpsearch.role"  # search, trial, final or ensemble
SEARCH = "hpsearch.search"  # the search's name (its results folder)
TASK = "hpsearch.task"
CODE_VERSION = "hpsearch.code_version"  # git sha, "-dirty" if the tree had changes, or "unknown"
DEVICE = "hpsearch.device"  # cpu, or the GPU's name
DATA_DIGEST = "hpsearch.data_digest"  # the data's DataIdentity (search/provenance.py)
DATA_SOURCE = "hpsearch.data_source"
ERROR = "hpsearch.error"  # the first line of what went wrong
FATE = "hpsearch.fate"  # how training ended (trainables/fates.py)

# The search's run
STUDY = "hpsearch.study"  # absolute path of the Optuna journal
SEARCH_ID = "hpsearch.search_id"
METRIC = "hpsearch.metric"
MODE = "hpsearch.mode"
COMMAND = "hpsearch.command"
BEST_TRIAL = "hpsearch.best_trial"
BEST_RUN_ID = "hpsearch.best_run_id"
STOPPING_RULE = "hpsearch.stopping_rule"

# A trial's run
TRIAL_ID = "hpsearch.trial_id"  # Tune's trial id (also the run's name)
BASELINE = "hpsearch.baseline"  # true for the seed's configuration
PRECISION = "hpsearch.precision"
COMPILED = "hpsearch.compiled"
RESTARTED_FROM = "hpsearch.restarted_from"  # the cut-short run a --resume replaced
MODEL_ID = "hpsearch.model_id"  # its kept model's id
KEPT = "hpsearch.kept"  # its kept model's rank, 1 = best

# A kept model (a logged model's tags, beside SEARCH, TASK, TRIAL_ID, CODE_VERSION, DATA_DIGEST)
RANK = "hpsearch.rank"

# A final (retrained) run
SOURCE_RUN = "hpsearch.source_run"  # the trial run its config came from
SEED = "hpsearch.seed"
TRAIN_ON_VAL = "hpsearch.train_on_val"
SEARCH_DATA_DIGEST = "hpsearch.search_data_digest"
DATA_MATCHES_SEARCH = "hpsearch.data_matches_search"

# An ensemble's run
MEMBERS = "hpsearch.members"  # the members' final run ids, in order
SIZE = "hpsearch.size"
