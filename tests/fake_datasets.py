"""Tiny MNIST, EMNIST and CIFAR files in the real on-disk formats, for tests.

Each writer puts files where torchvision looks for them under ``root`` and returns the images
as a model should see them (upright, uint8 ``[N, C, H, W]``) with their labels, so a test can
compare a loader's output with what was written. Every class is present, each has its own
simple pattern plus noise (learnable in an epoch or two), and the same seed writes the same bytes.

By default the files are laid out as torchvision keeps them after a download (``download=False``
finds them). ``packed=True`` writes them as downloaded instead (MNIST ``.gz`` files, EMNIST's
``gzip.zip``, the CIFAR ``.tar.gz``): torchvision unpacks those only with ``download=True`` and
only if their md5 is the official one, which tiny files cannot match, hence the ``*_md5_patch``
helpers. Importing this module has no side effects.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torchvision import datasets

if TYPE_CHECKING:
    import pytest

EMNIST_BYMERGE_CLASSES = 47
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class FakeData:
    """What a writer wrote, upright: uint8 ``[N, C, H, W]`` images and int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def write_mnist(
    root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0, packed: bool = False
) -> FakeData:
    """Write ``root/MNIST/raw/`` IDX files; class k is a bright 6x6 block in cell k of a 4x4 grid."""
    folder = Path(root) / "MNIST" / "raw"
    data = _fake(n_train, n_test, 10, seed, lambda y, rng: _grid_images(y, rng, size=28, grid=4, channels=1))
    for prefix, x, y in (("train", data.train_x, data.train_y), ("t10k", data.test_x, data.test_y)):
        _write_idx_pair(folder, prefix, x, y, packed)
    return data


def write_emnist(
    root: Path, n_train: int = 470, n_test: int = 94, seed: int = 0, packed: bool = False
) -> FakeData:
    """Write the bymerge files in ``root/EMNIST/raw/``, each image stored transposed as EMNIST does.

    Upright, class k is a bright 3x3 block in cell (k // 7, k % 7) of a 7x7 grid: class 1 sits in
    the top row, second column, where the transposed image would put it in the second row, first
    column (class 7's place). ``packed=True`` writes the official ``gzip.zip`` layout instead.
    """
    folder = Path(root) / "EMNIST" / "raw"
    data = _fake(n_train, n_test, EMNIST_BYMERGE_CLASSES, seed, lambda y, rng: _grid_images(y, rng, 28, 7, 1))
    files = {}
    for part, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        stored = x[:, 0].transpose(1, 2)  # as the EMNIST files keep them: columns first
        files[f"emnist-bymerge-{part}-images-idx3-ubyte"] = _idx_bytes(stored)
        files[f"emnist-bymerge-{part}-labels-idx1-ubyte"] = _idx_bytes(y.to(torch.uint8))
    folder.mkdir(parents=True, exist_ok=True)
    if packed:
        # The official archive: a gzip/ folder of .gz files (only bymerge here).
        with zipfile.ZipFile(folder / "gzip.zip", "w") as zf:
            for name, blob in files.items():
                zf.writestr(f"gzip/{name}.gz", gzip.compress(blob, mtime=0))
    else:
        for name, blob in files.items():
            (folder / name).write_bytes(blob)
    return data


def write_cifar(
    root: Path,
    which: Literal["cifar10", "cifar100"],
    n_train: int = 200,
    n_test: int = 100,
    seed: int = 0,
    packed: bool = False,
) -> FakeData:
    """Write python-pickle CIFAR batches under ``root`` (``cifar-10-batches-py/`` or ``cifar-100-python/``).

    Class k is a bright 7x7 block in cell k % 16 of a 4x4 grid, in the colour channels given by the
    bits of k // 16 + 1. Load them with ``cifar_md5_patch``: the official md5s cannot match.
    """
    cls = _cifar_class(which)
    n_classes = 10 if which == "cifar10" else 100
    data = _fake(n_train, n_test, n_classes, seed, _cifar_images)
    files: dict[str, dict] = {}
    if which == "cifar10":
        train_parts = np.array_split(np.arange(n_train), len(cls.train_list))
        for (name, _), idx in zip(cls.train_list, train_parts, strict=True):
            files[name] = _cifar_batch(data.train_x[idx], data.train_y[idx], "labels", name)
        files["test_batch"] = _cifar_batch(data.test_x, data.test_y, "labels", "test_batch")
        files["batches.meta"] = {"num_cases_per_batch": len(train_parts[0]), "label_names": CIFAR10_NAMES}
    else:
        files["train"] = _cifar_batch(data.train_x, data.train_y, "fine_labels", "train")
        files["test"] = _cifar_batch(data.test_x, data.test_y, "fine_labels", "test")
        files["meta"] = {
            "fine_label_names": [f"fine_{k:02d}" for k in range(100)],
            "coarse_label_names": [f"coarse_{k:02d}" for k in range(20)],
        }
    blobs = {f"{cls.base_folder}/{name}": pickle.dumps(obj, protocol=2) for name, obj in files.items()}
    Path(root).mkdir(parents=True, exist_ok=True)
    if packed:
        with tarfile.open(Path(root) / cls.filename, "w:gz") as tar:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        for name, blob in blobs.items():
            (Path(root) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(root) / name).write_bytes(blob)
    return data


# md5 patches. torchvision checks the official md5 of every file it reads or unpacks; tiny test
# files cannot match, so a test that wants them loaded tells torchvision the tiny files' md5s.
# This is deliberate and test-only: the loaders keep torchvision's check for users, and a test
# that skips the patch sees the tiny files rejected. Call after writing the files.


def mnist_md5_patch(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Accept the ``.gz`` files in ``root/MNIST/raw`` (from ``write_mnist(packed=True)``)."""
    folder = Path(root) / "MNIST" / "raw"
    resources = [(name, _md5(folder / name)) for name, _ in datasets.MNIST.resources]
    monkeypatch.setattr(datasets.MNIST, "resources", resources)


def emnist_md5_patch(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Accept the ``gzip.zip`` in ``root/EMNIST/raw`` (from ``write_emnist(packed=True)``)."""
    monkeypatch.setattr(datasets.EMNIST, "md5", _md5(Path(root) / "EMNIST" / "raw" / "gzip.zip"))


def cifar_md5_patch(
    monkeypatch: pytest.MonkeyPatch, root: Path, which: Literal["cifar10", "cifar100"]
) -> None:
    """Accept the tiny CIFAR files under ``root``: the batch files, the meta file, and the archive if any.

    With ``packed=True`` files, only the archive's md5 is known before torchvision unpacks it; the
    batch files' md5s are patched to those of the archive's members, read here from the archive.
    """
    cls = _cifar_class(which)
    archive = Path(root) / cls.filename
    if archive.is_file():
        monkeypatch.setattr(cls, "tgz_md5", _md5(archive))
        with tarfile.open(archive, "r:gz") as tar:
            digest = {
                m.name.split("/")[-1]: hashlib.md5(tar.extractfile(m).read()).hexdigest()
                for m in tar
                if m.isfile()
            }
    else:
        folder = Path(root) / cls.base_folder
        digest = {p.name: _md5(p) for p in folder.iterdir() if p.is_file()}
    # New lists and dict, never edits in place: monkeypatch restores the class attributes, but
    # an in-place edit would leak into every later test.
    monkeypatch.setattr(cls, "train_list", [[name, digest[name]] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, digest[name]] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": digest[cls.meta["filename"]]})


def _cifar_class(which: str) -> type[datasets.CIFAR10]:
    if which not in ("cifar10", "cifar100"):
        raise ValueError(f"which must be 'cifar10' or 'cifar100', got {which!r}")
    return datasets.CIFAR10 if which == "cifar10" else datasets.CIFAR100


def _fake(n_train: int, n_test: int, n_classes: int, seed: int, draw) -> FakeData:
    if min(n_train, n_test) < n_classes:
        raise ValueError(f"need at least {n_classes} images per split so every class is present")
    rng = np.random.default_rng(seed)

    def labels(n: int) -> np.ndarray:
        return rng.permutation(np.arange(n) % n_classes)  # balanced, every class present, shuffled

    train_y, test_y = labels(n_train), labels(n_test)
    train_x, test_x = draw(train_y, rng), draw(test_y, rng)
    as_t = torch.from_numpy
    return FakeData(as_t(train_x), as_t(train_y).long(), as_t(test_x), as_t(test_y).long())


def _grid_images(y: np.ndarray, rng: np.random.Generator, size: int, grid: int, channels: int) -> np.ndarray:
    """Noise in 0..63, and a bright block (192..255) in grid cell y (row-major) of each image."""
    x = rng.integers(0, 64, size=(len(y), channels, size, size), dtype=np.uint8)
    cell = size // grid
    block = max(cell - 1, 1)
    for i, label in enumerate(y):
        r, c = divmod(int(label), grid)
        top, left = r * cell, c * cell
        x[i, :, top : top + block, left : left + block] = rng.integers(
            192, 256, size=(channels, block, block)
        )
    return x


def _cifar_images(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = _grid_images(y % 16, rng, size=32, grid=4, channels=3)
    dark = rng.integers(0, 64, size=x.shape, dtype=np.uint8)
    for i, label in enumerate(y):
        bits = int(label) // 16 + 1  # 1..7: which of R, G, B carry the block
        for ch in range(3):
            if not bits >> ch & 1:
                x[i, ch] = dark[i, ch]
    return x


def _cifar_batch(x: torch.Tensor, y: torch.Tensor, key: str, name: str) -> dict:
    # As in the real files: each row is 3072 bytes, the R plane, then G, then B, row-major.
    batch = {"batch_label": name, key: [int(v) for v in y], "data": x.reshape(len(x), -1).numpy()}
    batch["filenames"] = [f"fake_{i:05d}.png" for i in range(len(x))]
    if key == "fine_labels":
        batch["coarse_labels"] = [int(v) // 5 for v in y]
    return batch


def _write_idx_pair(folder: Path, prefix: str, x: torch.Tensor, y: torch.Tensor, packed: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, arr in (("images-idx3-ubyte", x[:, 0]), ("labels-idx1-ubyte", y.to(torch.uint8))):
        blob = _idx_bytes(arr)
        name = f"{prefix}-{kind}"
        if packed:
            (folder / f"{name}.gz").write_bytes(gzip.compress(blob, mtime=0))
        else:
            (folder / name).write_bytes(blob)


def _idx_bytes(arr: torch.Tensor) -> bytes:
    """The IDX format: zero, zero, type 0x08 (ubyte), ndim; then big-endian int32 dims; then data."""
    header = bytes([0, 0, 0x08, arr.dim()]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.contiguous().numpy().tobytes()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
