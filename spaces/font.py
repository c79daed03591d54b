"""Search space for `font`: printed characters, 52 classes, 90x90, the seed's bottleneck CNN.

A space file is plain Python: copy it, edit it, pass it with `--space`. It names the task,
the metric to optimise, the per-trial budget, the seed's baseline and the search space.
"""

TASK = "font"
METRIC = "val_acc"
MODE = "max"
BUDGET_S = 600  # per trial training time, seconds: the 10-minute rule
MAX_EPOCHS = 30  # every trial's horizon: its lr schedule runs over these epochs, or what BUDGET_S fits

# The seed (seed-tasks.md section 1): Adam 1e-3, StepLR(3, 0.5), batch 64, 7 epochs.
BASELINE = {
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "schedule": "step",
    "step_size": 3,
    "gamma": 0.5,
    "batch_size": 64,
    "epochs": 7,
    "label_smoothing": 0.0,
    "augment": "none",
    "stem_channels": 16,
    "stem_kernel": 7,
    "width_mult": 1.0,
    "blocks_per_stage": 2,
    "fc_width": 256,
    "dropout1": 0.5,
    "dropout2": 0.3,
    "image_size": 90,  # the images' own size: the seed's network sees them as they are
}

# `--quick`: a search that fits a 2-core CPU in about 15 minutes (smaller generated set,
# fewer epochs and trials). The font CNN trains at ~50 images/s per CPU core at 90x90, so a
# 90x90 trial fits about 1.4 of the 6 epochs in its budget; one that resamples to 48x48 about 5.
# Fonts of families it has not seen are what val asks of it: more images beat more epochs
# over fewer (with 48 per class, the search's best stayed under 0.89: docs/experiments.md, "`--quick`
# searches on the real tasks").
# 6 rounds of 2 trials at 140 s, after ~40 s of start-up (data, plan, Ray): 150 s ran 920 s.
QUICK = {
    "dataset_options": {"train": 96, "val": 16, "test": 16},  # images per class
    "max_epochs": 6,
    "trials": 12,
    "budget_s": 140,
}


def space(trial):
    """Optuna define-by-run space; keys not suggested keep their BASELINE value."""
    optimizer = trial.suggest_categorical("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
    trial.suggest_float("lr", 1e-4, 3e-2, log=True)
    if optimizer in ("sgd", "rmsprop"):
        trial.suggest_float("momentum", 0.8, 0.99)
    trial.suggest_categorical("weight_decay", [0.0, 1e-5, 1e-4, 5e-4])
    if trial.suggest_categorical("schedule", ["none", "step", "cosine"]) == "step":
        trial.suggest_int("step_size", 1, 8)
        trial.suggest_float("gamma", 0.1, 0.9)
    trial.suggest_categorical("batch_size", [32, 64, 128, 256])
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_categorical("augment", ["none", "affine"])
    trial.suggest_categorical("width_mult", [0.5, 0.75, 1.0, 1.5])
    trial.suggest_int("blocks_per_stage", 1, 3)
    trial.suggest_categorical("fc_width", [128, 256, 512])
    trial.suggest_float("dropout1", 0.0, 0.6)
    trial.suggest_float("dropout2", 0.0, 0.5)
    # The side the network sees (the images are resampled first): 48 costs a quarter of 90.
    trial.suggest_categorical("image_size", [48, 64, 90])
