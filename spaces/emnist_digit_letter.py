"""Search space for `emnist_digit_letter`: EMNIST bymerge as digit (0) or letter (1), a row LSTM.

A space file is plain Python: copy it, edit it, pass it with `--space`.
"""

TASK = "emnist_digit_letter"
METRIC = "val_acc"
MODE = "max"
BUDGET_S = 600  # per trial training time, seconds: the 10-minute rule
MAX_EPOCHS = 15  # every trial's horizon: its lr schedule runs over these epochs, or what BUDGET_S fits

# The seed (seed-tasks.md section 2, 2-class): Adam 1e-3, batch 256, hidden 128, 3 layers,
# dropout 0.2 on the outputs, 8 epochs, no schedule.
BASELINE = {
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "schedule": "none",
    "batch_size": 256,
    "epochs": 8,
    "label_smoothing": 0.0,
    "augment": "none",
    "hidden": 128,
    "layers": 3,
    "dropout": 0.2,
}

QUICK = {
    "train_per_class": 200,
    "val_per_class": 50,
    "max_epochs": 3,
    "trials": 12,
    "budget_s": 120,
}


def space(trial):
    """Optuna define-by-run space; keys not suggested keep their BASELINE value."""
    optimizer = trial.suggest_categorical("optimizer", ["adam", "adamw", "rmsprop"])
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    if optimizer == "rmsprop":
        trial.suggest_float("momentum", 0.0, 0.95)
    trial.suggest_categorical("weight_decay", [0.0, 1e-6, 1e-5, 1e-4])
    if trial.suggest_categorical("schedule", ["none", "step", "cosine"]) == "step":
        trial.suggest_int("step_size", 1, 6)
        trial.suggest_float("gamma", 0.1, 0.9)
    trial.suggest_categorical("batch_size", [128, 256, 512, 1024])
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_categorical("hidden", [64, 128, 256, 384, 512])
    trial.suggest_int("layers", 1, 4)
    trial.suggest_float("dropout", 0.0, 0.5)
