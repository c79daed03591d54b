"""Ray-free helpers every MLflow writer here shares: the code version, and whether a server is up."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import mlflow

REPO = Path(__file__).resolve().parent.parent

# MLflow's HTTP client retries a dead server 7 times with growing waits (minutes, then a
# traceback). Every tool here checks the server first and reports in one line; a failure mid-run
# is a warning. So: few, quick retries, unless the user set their own.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def code_version(repo: Path = REPO) -> str:
    """The git commit of ``repo``, with ``-dirty`` if tracked files differ from it; else "unknown"."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        # A sha alone would claim code that did not run: uncommitted edits are part of provenance.
        diff = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=repo, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if diff.returncode == 1 else sha


def tracking_server(tracking_uri: str | None) -> str | None:
    """The tracking server's address, if the store is one (not a local SQLite file)."""
    uri = tracking_uri or mlflow.get_tracking_uri()
    return uri if uri.startswith(("http://", "https://")) else None


def reachable(uri: str, timeout_s: float = 5.0) -> bool:
    """Whether anything answers at the server's address: any HTTP status means it is up."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True
    except urllib.error.URLError as e:
        return isinstance(e.reason, ssl.SSLError)  # TLS settings are MLflow's client's business
    except (TimeoutError, ConnectionError):
        return False
    except Exception:
        return True  # an address urllib cannot use: leave the verdict to MLflow's client


def redact(text: str) -> str:
    """``text`` with the password (or token) of any ``scheme://user:secret@host`` in it hidden."""
    return re.sub(r"(\w+://[^/\s:@]*):[^/\s@]*@", r"\1:***@", text)


# MLflow 3's UI opens an experiment without this tag on its GenAI overview (no runs, a popup); with
# it, on the runs table of a model-training experiment.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(client: mlflow.MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created (as a model-training experiment) if need be."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags=EXPERIMENT_KIND)
        except Exception:
            experiment = client.get_experiment_by_name(name)  # another process made it meanwhile
            if experiment is None:
                raise
    if not any(experiment.tags.get(k) for k in EXPERIMENT_KIND):
        for key, value in EXPERIMENT_KIND.items():
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id
