"""Where a search keeps its state: the local results dir, or storage that every node reaches.

Tune writes the search's state (tuner.pkl, the experiment's and the searcher's) and every
trial's checkpoints to ``<storage>/<name>`` (``RunConfig(storage_path=...)``, on pyarrow's
filesystems): by default the results dir's own ``<results dir>/<name>``, which only this machine
sees. A trial on another node of a cluster cannot write its checkpoint there, so a search on
several machines needs storage they all reach: ``s3://``, ``gs://``, an absolute ``file://`` URI
or the plain path of a shared (NFS) mount. An explicit ``--storage-path`` is taken as the user's
word that every node sees it (a mount point looks like any local path); only the implicit
default is refused on a cluster of more than one node.

The driver's own files (search.json, the Optuna journal) stay where the search writes them, in
the results dir; with storage of its own a search also copies them to ``<storage>/<name>``, at
each of Tune's experiment checkpoints, so that ``--resume`` on another machine (a new head node,
a new Ray job) fetches them back and goes on from the storage alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
from ray import tune

from hpsearch.plumbing.errors import UsageError
from hpsearch.search.mlflow_buffer import one_line

log = logging.getLogger(__name__)

SCHEMES = ("s3", "gs", "gcs", "file", "hdfs", "viewfs", "abfs", "abfss")  # pyarrow's filesystems
# Query keys of pyarrow's URIs that would put a secret in search.json and the MLflow params.
SECRET_KEYS = re.compile(r"(^|&)(access_key|secret_key|session_token|token|password)=", re.IGNORECASE)


def storage_path(value: str) -> str:
    """``--storage-path`` as Tune takes it and search.json records it: a URI as given (no
    trailing slash), a local path made absolute, since every node reads the same path whatever
    its working directory."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return str(Path(value).expanduser().resolve())
    if scheme not in SCHEMES:
        raise UsageError(f"--storage-path {value!r}: use s3://, gs://, file:// or a shared path")
    where, _, query = rest.partition("?")
    if "@" in where.split("/", 1)[0] or SECRET_KEYS.search(query):
        raise UsageError(
            "--storage-path must not hold credentials (it is recorded and logged): give them in the "
            "environment, e.g. AWS_ACCESS_KEY_ID or GOOGLE_APPLICATION_CREDENTIALS"
        )
    if scheme == "file" and not where.startswith("/"):
        raise UsageError(f"--storage-path {value!r}: a file:// URI takes an absolute path, file:///mnt/...")
    return f"{scheme}://{where.rstrip('/') or '/'}" + (f"?{query}" if query else "")


def search_uri(storage: str | None, experiment_dir: Path) -> str:
    """Where Tune keeps the search: ``<storage>/<name>``, or the results dir's own folder."""
    if storage is None:
        return str(experiment_dir.resolve())
    base, _, query = storage.partition("?")
    return f"{base.rstrip('/')}/{experiment_dir.name}" + (f"?{query}" if query else "")


def started(storage: str | None, experiment_dir: Path) -> bool:
    """Whether Tune has state for this search (its tuner.pkl) where the search keeps it."""
    uri = search_uri(storage, experiment_dir)
    try:
        return tune.Tuner.can_restore(uri)
    except (OSError, ValueError) as e:  # storage that does not answer, refuses us, or is no storage
        raise UsageError(f"could not read the search's storage at {uri}: {one_line(e)}") from e


def check_shared(storage: str | None, experiment_dir: Path) -> None:
    """Refuse the default storage (this machine's results dir) on a cluster of several nodes:
    trials on the others could write no checkpoint, so a retried trial would start over and
    none would keep its model."""
    if storage is not None:
        return
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1:
        raise UsageError(
            f"this Ray cluster has {len(nodes)} nodes, and only this one sees {experiment_dir.parent}: "
            "give --storage-path s3://..., gs://..., file:///<shared mount>/... or a path every node mounts"
        )


def fetch(storage: str, experiment_dir: Path, names: Sequence[str]) -> list[str]:
    """Copy each of ``names`` that the local search folder lacks from the search's storage (a
    search resumed on another machine); the names copied."""
    uri = search_uri(storage, experiment_dir)
    fs, folder = _filesystem(uri)
    copied = []
    for name in names:
        local = experiment_dir / name
        source = f"{folder}/{name}"
        try:
            if local.exists() or fs.get_file_info(source).type != pyarrow.fs.FileType.File:
                continue
            with fs.open_input_stream(source) as f:
                content = f.readall()
        except OSError as e:
            raise UsageError(f"could not read {name} from the storage at {uri}: {one_line(e)}") from e
        experiment_dir.mkdir(parents=True, exist_ok=True)
        local.write_bytes(content)
        copied.append(name)
    return copied


def push(storage: str, experiment_dir: Path, names: Sequence[str], pushed: dict | None = None) -> None:
    """Copy each of ``names`` in the local search folder to the search's storage; with ``pushed``
    (what was copied, by name), only those changed since."""
    fs, folder = _filesystem(search_uri(storage, experiment_dir))
    fs.create_dir(folder)
    for name in names:
        local = experiment_dir / name
        if not local.is_file():
            continue
        stat = local.stat()
        version = (stat.st_size, stat.st_mtime_ns)
        if pushed is not None and pushed.get(name) == version:
            continue
        # Written aside, then moved: a copy cut short never stands in for the file.
        with fs.open_output_stream(f"{folder}/{name}.part") as f:
            f.write(local.read_bytes())
        fs.move(f"{folder}/{name}.part", f"{folder}/{name}")
        if pushed is not None:
            pushed[name] = version


class CopyToStorage(tune.Callback):
    """Keeps the storage's copy of the driver's files (``names``) up to date: at the search's
    start and end, and whenever Tune saves its own state there. (Tune asks callbacks for their
    state right after the searcher saved its own: the journal's copy is never older than it.)"""

    def __init__(self, storage: str, experiment_dir: Path, names: Sequence[str]) -> None:
        self.storage, self.experiment_dir, self.names = storage, experiment_dir, tuple(names)
        self._failed = False
        self._pushed: dict[str, tuple[int, int]] = {}

    def setup(self, **info: Any) -> None:
        self._push()

    def get_state(self) -> dict | None:
        self._push()
        return None  # nothing of its own for Tune to keep

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._push()

    def _push(self) -> None:
        try:
            push(self.storage, self.experiment_dir, self.names, self._pushed)
            self._failed = False
        except Exception as e:  # the search goes on; the copy is a convenience for --resume elsewhere
            if not self._failed:
                log.warning("could not copy the search's files to %s: %s", self.storage, one_line(e))
            self._failed = True


def _filesystem(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    if "://" not in uri:
        return pyarrow.fs.LocalFileSystem(), uri
    return pyarrow.fs.FileSystem.from_uri(uri)
