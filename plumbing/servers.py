"""Where the MLflow tracking server is, whether it answers, and how to print its address.

Everything here that talks to MLflow imports it (search/provenance.py does): its retry defaults
are in the environment before MLflow's client makes a request.
"""

from __future__ import annotations

import os
import re
import ssl
import urllib.error
import urllib.request

import mlflow

# MLflow's HTTP client retries a dead server 7 times with growing waits (minutes, then a
# traceback). Every tool here checks the server first and reports in one line; a failure mid-run
# is a warning. So: few, quick retries, unless the user set their own.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


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
