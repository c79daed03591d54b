"""MNIST, EMNIST (bymerge), CIFAR-10 and CIFAR-100, read through torchvision's dataset classes.

torchvision owns the on-disk layout, the download and the md5 checks (``<root>/MNIST/raw/``,
``<root>/EMNIST/raw/``, ``<root>/cifar-10-batches-py/``, ``<root>/cifar-100-python/``). The data
root is only read: archives found there are unpacked, and missing files downloaded, in
``work_dir`` (under the cache dir), never in a user's (maybe shared) data folder. This
module reads the decoded arrays whole (``.data``/``.targets``, never one ``__getitem__`` per
image), turns EMNIST upright, and holds a seeded, stratified validation set out of the official
train split: these datasets ship only train and test, and the test set must stay untouched.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.data.registry import register_dataset
from hpsearch.trainables.data.splits import Split, Splits, stratified_holdout

# torchvision's downloads use urllib with no timeout, so a dropped connection (a firewall that
# swallows packets) would hang for minutes. The limit is per socket operation, not per file:
# a slow but live mirror still finishes.
DOWNLOAD_TIMEOUT_S = 20.0

# What a failed download raises: URLError, socket timeouts and SSL errors are OSErrors;
# torchvision wraps mirror failures and bad md5s in RuntimeError; a cut-off transfer can
# surface as an HTTPException.
_DOWNLOAD_ERRORS = (OSError, RuntimeError, http.client.HTTPException)

Make = Callable[[Path, bool, bool], datasets.VisionDataset]  # (root, train, download) -> dataset

# Where each dataset's official archives sit under a root, as torchvision lays them out.
ARCHIVES = {
    "mnist": [f"MNIST/raw/{name}" for name, _ in datasets.MNIST.resources],
    "emnist": ["EMNIST/raw/gzip.zip"],
    "cifar10": [datasets.CIFAR10.filename],
    "cifar100": [datasets.CIFAR100.filename],
}


@register_dataset("mnist")
def load_mnist(root: Path, *, work_dir: Path, download: bool, seed: int, val_size: int) -> Splits:
    """MNIST: 1x28x28, 10 classes, 60,000 train (less ``val_size`` held out) / 10,000 test."""
    root = Path(root)
    train, test = _open(
        "MNIST",
        lambda where, train, dl: datasets.MNIST(where, train=train, download=dl),
        root,
        Path(work_dir),
        ARCHIVES["mnist"],
        download,
        lambda: _mnist_remedy(root / "MNIST" / "raw"),
    )
    return _holdout(
        Split(train.data.unsqueeze(1), train.targets),
        Split(test.data.unsqueeze(1), test.targets),
        list(train.classes),
        val_size,
        seed,
        "mnist",
        Path(train.root),
    )


@register_dataset("emnist")
def load_emnist(root: Path, *, work_dir: Path, download: bool, seed: int, val_size: int) -> Splits:
    """EMNIST bymerge: 1x28x28 upright, 47 classes, 697,932 train (less ``val_size``) / 116,323 test."""
    root = Path(root)
    train, test = _open(
        "EMNIST bymerge",
        lambda where, train, dl: datasets.EMNIST(where, split="bymerge", train=train, download=dl),
        root,
        Path(work_dir),
        ARCHIVES["emnist"],
        download,
        lambda: _emnist_remedy(root / "EMNIST" / "raw"),
    )

    # The EMNIST files store each image transposed (columns first). Swap H and W so rows are
    # rows: a model reading the image as a sequence of rows must see what a person sees.
    def upright(images: torch.Tensor) -> torch.Tensor:
        return images.transpose(1, 2).unsqueeze(1).contiguous()

    return _holdout(
        Split(upright(train.data), train.targets),
        Split(upright(test.data), test.targets),
        list(train.classes),
        val_size,
        seed,
        "emnist",
        Path(train.root),
    )


@register_dataset("cifar10")
def load_cifar10(root: Path, *, work_dir: Path, download: bool, seed: int, val_size: int) -> Splits:
    """CIFAR-10: 3x32x32, 10 classes, 50,000 train (less ``val_size``) / 10,000 test."""
    return _load_cifar(
        datasets.CIFAR10, "CIFAR-10", "cifar10", Path(root), Path(work_dir), download, seed, val_size
    )


@register_dataset("cifar100")
def load_cifar100(root: Path, *, work_dir: Path, download: bool, seed: int, val_size: int) -> Splits:
    """CIFAR-100 (fine labels): 3x32x32, 100 classes, 50,000 train (less ``val_size``) / 10,000 test."""
    return _load_cifar(
        datasets.CIFAR100, "CIFAR-100", "cifar100", Path(root), Path(work_dir), download, seed, val_size
    )


def _load_cifar(
    cls: type[datasets.CIFAR10],
    title: str,
    name: str,
    root: Path,
    work_dir: Path,
    download: bool,
    seed: int,
    val_size: int,
) -> Splits:
    train, test = _open(
        title,
        lambda where, train, dl: cls(where, train=train, download=dl),
        root,
        work_dir,
        ARCHIVES[name],
        download,
        lambda: _cifar_remedy(cls, root),
    )

    def as_split(ds: datasets.CIFAR10) -> Split:
        # torchvision keeps HWC numpy arrays (a transposed view of the files' CHW bytes), so
        # permuting back to CHW is free.
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return Split(x, torch.tensor(ds.targets, dtype=torch.int64))

    return _holdout(
        as_split(train), as_split(test), list(train.classes), val_size, seed, name, Path(train.root)
    )


def _open(
    title: str,
    make: Make,
    root: Path,
    work_dir: Path,
    archives: list[str],
    download: bool,
    remedy: Callable[[], tuple[Path, str]],
) -> tuple:
    """Both official splits of a dataset; a one-line UsageError if its files are missing."""
    for where in (root, work_dir):
        try:
            # Files already there (a user's, or unpacked by an earlier run): no network lookup.
            return make(where, True, False), make(where, False, False)
        except RuntimeError:
            pass
    # Official archives a user copied in (../shared/data/MNIST/raw/*.gz) are unpacked even with
    # downloading off: torchvision's download=True skips the network for files already there.
    have_archives = all((root / relative).is_file() for relative in archives)
    if not download and not have_archives:
        folder, todo = remedy()
        raise UsageError(f"{title} not found under {folder} (downloading is off): {todo}")
    # download=True also unpacks official archives a user copied in, without the network.
    # Link the user's archives into the work dir so the unpacking happens there, not in root.
    for relative in archives:
        source, target = root / relative, work_dir / relative
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve())
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return make(work_dir, True, True), make(work_dir, False, True)
    except _DOWNLOAD_ERRORS as err:
        folder, todo = remedy()
        raise UsageError(
            f"{title} not found under {folder} and could not be downloaded (no network?): {todo}"
        ) from err


def _holdout(
    train: Split, test: Split, classes: list[str], val_size: int, seed: int, name: str, found: Path
) -> Splits:
    if not 0 < val_size < len(train):
        raise UsageError(f"val_size for {name} must be between 1 and {len(train) - 1}, got {val_size}")
    keep, held = stratified_holdout(train.y, val_size, seed)
    source = f"{name} (torchvision) {found}"
    return Splits(train.take(keep), train.take(held), test, classes, source)


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds if previous is None else min(previous, seconds))
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


# A remedy gives the folder torchvision looks in and what to put there, naming only the files
# that are missing or fail torchvision's md5 check (all of them if, oddly, none does).


def _mnist_remedy(folder: Path) -> tuple[Path, str]:
    # torchvision reads the unpacked files; download=True makes them from intact .gz files offline.
    wanted = [
        (gz, md5) for gz, md5 in datasets.MNIST.resources if not (folder / gz.removesuffix(".gz")).is_file()
    ]
    return folder, f"put {_files(folder, wanted or datasets.MNIST.resources)} there"


def _emnist_remedy(folder: Path) -> tuple[Path, str]:
    cls = datasets.EMNIST
    parts = [f"{s}-{k}" for s in ("train", "test") for k in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    names = [f"emnist-bymerge-{p}" for p in parts]
    missing = [n for n in names if not (folder / n).is_file()] or names
    archive = _files(folder, [(Path(cls.url).name, cls.md5)])
    return (
        folder,
        f"put the official {archive} from {cls.url} there, or {', '.join(missing)} extracted from it",
    )


def _cifar_remedy(cls: type[datasets.CIFAR10], root: Path) -> tuple[Path, str]:
    folder = root / cls.base_folder
    entries = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
    bad = [(name, md5) for name, md5 in entries if not check_integrity(folder / name, md5)] or entries
    archive = _files(root, [(cls.filename, cls.tgz_md5)])
    return root, f"put {archive} there, or its extracted {cls.base_folder}/ folder with {_files(folder, bad)}"


def _files(folder: Path, entries: list) -> str:
    """'a, b, c', saying which of them are there but fail the md5 check (a partial download, another
    release): the likelier mistake when a user can see the file they are asked for."""
    names = [name for name, _ in entries]
    corrupt = [
        name for name, md5 in entries if (folder / name).is_file() and not check_integrity(folder / name, md5)
    ]
    if not corrupt:
        return ", ".join(names)
    verb = "fails" if len(corrupt) == 1 else "fail"
    return f"{', '.join(names)} ({', '.join(corrupt)} there {verb} the md5 check)"
