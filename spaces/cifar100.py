"""Search space for `cifar100`: the seed's plain conv-BN-ReLU CNN, 6 or 10 conv layers.

A space file is plain Python: copy it, edit it, pass it with `--space`.
"""

TASK = "cifar100"
METRIC = "val_acc"
MODE = "max"
BUDGET_S = 600  # per trial training time, seconds: the 10-minute rule
MAX_EPOCHS = 40  # every trial's horizon: its lr schedule runs over these epochs, or what BUDGET_S fits

# The seed's best (seed-tasks.md section 3, 69.23%): 10 conv layers "size 64", SGD lr 5e-3,
# momentum 0.9, weight decay 5e-4, cosine over 30 epochs, batch 200, horizontal flips.
BASELINE = {
    "optimizer": "sgd",
    "lr": 5e-3,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "schedule": "cosine",
    "batch_size": 200,
    "epochs": 30,
    "label_smoothing": 0.0,
    "augment": "flip",
    "depth": 10,
    "width": 64,
    "kernel": 3,
    "dropout": 0.0,
}

QUICK = {
    "train_per_class": 100,
    "val_per_class": 20,
    "max_epochs": 3,
    "trials": 8,
    "budget_s": 150,
}


def space(trial):
    """Optuna define-by-run space; keys not suggested keep their BASELINE value."""
    optimizer = trial.suggest_categorical("optimizer", ["adam", "adamw", "sgd"])
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    if optimizer == "sgd":
        trial.suggest_float("momentum", 0.8, 0.99)
        trial.suggest_categorical("nesterov", [False, True])
    trial.suggest_categorical("weight_decay", [0.0, 1e-4, 5e-4, 1e-3])
    if trial.suggest_categorical("schedule", ["none", "step", "cosine"]) == "step":
        trial.suggest_int("step_size", 2, 20)
        trial.suggest_float("gamma", 0.1, 0.9)
    trial.suggest_categorical("batch_size", [64, 128, 200, 256, 512])
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_categorical("augment", ["none", "flip", "flip_crop"])
    trial.suggest_categorical("depth", [6, 10])
    trial.suggest_categorical("width", [32, 48, 64, 96])
    trial.suggest_float("dropout", 0.0, 0.5)
