"""Search space for `cifar10`: the seed's 6-conv batch-norm CNN with a BatchNorm1d head.

A space file is plain Python: copy it, edit it, pass it with `--space`.
"""

TASK = "cifar10"
METRIC = "val_acc"
MODE = "max"
BUDGET_S = 600  # per trial training time, seconds: the 10-minute rule
MAX_EPOCHS = 40  # every trial's horizon: its lr schedule runs over these epochs, or what BUDGET_S fits

# The seed (seed-tasks.md section 5): Adam 3e-3, weight decay 1e-5, batch 64; its ~700
# iterations of batch 64 are one pass over the training set, so one epoch.
BASELINE = {
    "optimizer": "adam",
    "lr": 3e-3,
    "weight_decay": 1e-5,
    "schedule": "none",
    "batch_size": 64,
    "epochs": 1,
    "label_smoothing": 0.0,
    "augment": "none",
    "conv1_channels": 64,
    "conv1_kernel": 5,
    "mid_channels": 32,
    "last_channels": 16,
    "dropout": 0.0,
}

QUICK = {
    "train_per_class": 500,
    "val_per_class": 100,
    "max_epochs": 4,
    "trials": 12,
    "budget_s": 120,
}


def space(trial):
    """Optuna define-by-run space; keys not suggested keep their BASELINE value."""
    optimizer = trial.suggest_categorical("optimizer", ["adam", "adamw", "sgd"])
    trial.suggest_float("lr", 1e-4, 5e-2, log=True)
    if optimizer == "sgd":
        trial.suggest_float("momentum", 0.8, 0.99)
        trial.suggest_categorical("nesterov", [False, True])
    trial.suggest_categorical("weight_decay", [0.0, 1e-5, 1e-4, 5e-4])
    if trial.suggest_categorical("schedule", ["none", "step", "cosine"]) == "step":
        trial.suggest_int("step_size", 1, 15)
        trial.suggest_float("gamma", 0.1, 0.9)
    trial.suggest_categorical("batch_size", [64, 128, 256, 512])
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_categorical("augment", ["none", "flip", "flip_crop"])
    trial.suggest_categorical("conv1_channels", [32, 64, 96, 128])
    trial.suggest_categorical("mid_channels", [32, 64, 96, 128])
    trial.suggest_categorical("last_channels", [16, 32, 64, 128])
    trial.suggest_float("dropout", 0.0, 0.5)
