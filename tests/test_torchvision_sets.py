"""The torchvision-backed loaders, on tiny files in the real formats (and, marked slow, real MNIST)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import torch
from torchvision import datasets

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.data import torchvision_sets
from hpsearch.trainables.data.registry import DATASETS
from hpsearch.trainables.data.splits import Splits
from tests.fake_datasets import (
    FakeData,
    cifar_md5_patch,
    emnist_md5_patch,
    mnist_md5_patch,
    write_cifar,
    write_emnist,
    write_mnist,
)

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "MNIST" / "raw"

# name -> (image shape, number of classes, tiny train size, val size)
SHAPES = {
    "mnist": ((1, 28, 28), 10, 200, 50),
    "emnist": ((1, 28, 28), 47, 470, 47),
    "cifar10": ((3, 32, 32), 10, 200, 50),
    "cifar100": ((3, 32, 32), 100, 300, 100),
}


def write_fake(name: str, root: Path, monkeypatch: pytest.MonkeyPatch, seed: int = 0) -> FakeData:
    n_train = SHAPES[name][2]
    if name == "mnist":
        return write_mnist(root, n_train=n_train, seed=seed)
    if name == "emnist":
        return write_emnist(root, n_train=n_train, seed=seed)
    fake = write_cifar(root, name, n_train=n_train, n_test=100, seed=seed)
    cifar_md5_patch(monkeypatch, root, name)
    return fake


def load(name: str, root: Path, *, seed: int = 0, download: bool = False) -> Splits:
    return DATASETS[name](
        root, work_dir=root / "work", download=download, seed=seed, val_size=SHAPES[name][3]
    )


def image_index(x: torch.Tensor) -> dict[bytes, int]:
    return {img.numpy().tobytes(): i for i, img in enumerate(x)}


@pytest.mark.parametrize("name", list(SHAPES))
def test_loader_reads_its_tiny_files(name, tmp_path, monkeypatch):
    fake = write_fake(name, tmp_path, monkeypatch)
    splits = load(name, tmp_path)
    shape, n_classes, n_train, val_size = SHAPES[name]
    for split in (splits.train, splits.val, splits.test):
        assert split.x.dtype == torch.uint8 and tuple(split.x.shape[1:]) == shape
        assert split.y.dtype == torch.int64
        assert 0 <= int(split.y.min()) and int(split.y.max()) < n_classes
    assert len(splits.classes) == n_classes
    assert (len(splits.train), len(splits.val)) == (n_train - val_size, val_size)
    # The official test split comes through untouched, in file order.
    assert torch.equal(splits.test.x, fake.test_x) and torch.equal(splits.test.y, fake.test_y)


@pytest.mark.parametrize("name", list(SHAPES))
def test_loader_holds_val_out_of_train(name, tmp_path, monkeypatch):
    fake = write_fake(name, tmp_path, monkeypatch)
    splits = load(name, tmp_path)
    # Every written train image lands in exactly one of train and val (the noise makes each unique).
    written = image_index(fake.train_x)
    assert len(written) == len(fake.train_x)
    train_ids = [written[img.numpy().tobytes()] for img in splits.train.x]
    val_ids = [written[img.numpy().tobytes()] for img in splits.val.x]
    assert set(train_ids).isdisjoint(val_ids)
    assert sorted(train_ids + val_ids) == list(range(len(fake.train_x)))
    assert torch.equal(splits.val.y, fake.train_y[val_ids])


@pytest.mark.parametrize("name", ["mnist", "cifar100"])
def test_loader_val_split_follows_the_seed(name, tmp_path, monkeypatch):
    write_fake(name, tmp_path, monkeypatch)
    first, again, other = (load(name, tmp_path, seed=seed) for seed in (0, 0, 1))
    assert first.digest() == again.digest()
    assert not torch.equal(first.val.x, other.val.x)
    assert torch.equal(first.test.x, other.test.x)  # the seed never touches the test set


@pytest.mark.parametrize("name", list(SHAPES))
def test_loader_val_split_is_stratified(name, tmp_path, monkeypatch):
    write_fake(name, tmp_path, monkeypatch)
    splits = load(name, tmp_path)
    _, n_classes, n_train, val_size = SHAPES[name]
    # The tiny sets are balanced, so each class gives val_size / n_classes images, give or take one.
    per_class = Counter(splits.val.y.tolist())
    assert set(per_class) == set(range(n_classes))
    assert all(abs(count - val_size / n_classes) <= 1 for count in per_class.values())


def test_emnist_images_come_out_upright(tmp_path):
    fake = write_emnist(tmp_path)
    splits = load("emnist", tmp_path)
    # What torchvision itself hands out is the transposed image, as in the real files ...
    stored = datasets.EMNIST(tmp_path, split="bymerge", train=False).data
    assert torch.equal(stored, fake.test_x[:, 0].transpose(1, 2))
    # ... and the loader turns it back: class 1's block is in the top row, second column (rows
    # 0-2, columns 4-6); read transposed it would sit in the second row, first column.
    ones = splits.test.x[splits.test.y == 1, 0].float().mean(0)
    assert ones[0:3, 4:7].min() > 150 and ones[4:7, 0:3].max() < 100
    assert torch.equal(splits.test.x, fake.test_x)


def test_emnist_class_names_are_the_bymerge_47(tmp_path):
    write_emnist(tmp_path)
    classes = load("emnist", tmp_path).classes
    # 10 digits, 26 capitals, then the 11 lower-case letters whose shape differs from the capital.
    assert classes[:10] == list("0123456789") and classes[10] == "A" and classes[35] == "Z"
    assert classes[36:] == list("abdefghnqrt")


@pytest.mark.parametrize("name", list(SHAPES))
def test_loader_without_files_offline_raises_one_line_usage_error(name, tmp_path):
    # No network here, so download=True fails; the message must say what to put where.
    with pytest.raises(UsageError) as info:
        load(name, tmp_path, download=True)
    message = str(info.value)
    assert "\n" not in message and "could not be downloaded" in message
    folder, files = {
        "mnist": (tmp_path / "MNIST" / "raw", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]),
        "emnist": (tmp_path / "EMNIST" / "raw", ["gzip.zip", "emnist-bymerge-train-images-idx3-ubyte"]),
        "cifar10": (tmp_path, ["cifar-10-python.tar.gz", "cifar-10-batches-py/", "data_batch_5", "meta"]),
        "cifar100": (tmp_path, ["cifar-100-python.tar.gz", "cifar-100-python/", "train", "meta"]),
    }[name]
    assert f"under {folder} " in message
    assert all(f in message for f in files), message


def test_loader_without_files_and_download_off_names_the_files(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("download=False must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(UsageError, match=r"MNIST not found under .*MNIST/raw \(downloading is off\): put "):
        load("mnist", tmp_path)


def test_loader_download_attempt_runs_under_a_socket_timeout(tmp_path, monkeypatch):
    seen = []

    def unreachable(*args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    before = socket.getdefaulttimeout()
    with pytest.raises(UsageError):
        load("cifar10", tmp_path, download=True)
    # A dropped connection fails after DOWNLOAD_TIMEOUT_S instead of hanging; the process-wide
    # default is restored afterwards.
    assert seen and all(t == torchvision_sets.DOWNLOAD_TIMEOUT_S for t in seen)
    assert socket.getdefaulttimeout() == before


@pytest.mark.parametrize("which", ["cifar10", "cifar100"])
def test_cifar_keeps_the_official_md5_check(which, tmp_path):
    # Without the test-only patch, the tiny files are not the official ones and are refused.
    write_cifar(tmp_path, which, n_train=100 if which == "cifar10" else 200, n_test=100)
    with pytest.raises(UsageError, match="fail the md5 check"):
        load(which, tmp_path)


def test_cifar_md5_check_rejects_a_tampered_file(tmp_path, monkeypatch):
    write_fake("cifar10", tmp_path, monkeypatch)
    load("cifar10", tmp_path)  # intact: loads
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    blob = bytearray(batch.read_bytes())
    blob[-100] ^= 0xFF  # one pixel byte changed
    batch.write_bytes(bytes(blob))
    with pytest.raises(UsageError, match=r"data_batch_3 \(data_batch_3 there fails the md5 check\)"):
        load("cifar10", tmp_path, download=True)


def test_mnist_unpacks_copied_gz_files_without_network(tmp_path, monkeypatch):
    fake = write_mnist(tmp_path, packed=True)
    mnist_md5_patch(monkeypatch, tmp_path)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    # Downloading off (--offline) still unpacks the official archives found in the data dir,
    # as ../shared/data/MNIST/raw holds only the .gz files; the data dir itself is not written.
    assert torch.equal(load("mnist", tmp_path).test.x, fake.test_x)
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == sorted(
        gz for gz, _ in datasets.MNIST.resources
    )


def test_emnist_unpacks_a_copied_gzip_zip_without_network(tmp_path, monkeypatch):
    fake = write_emnist(tmp_path, packed=True)
    emnist_md5_patch(monkeypatch, tmp_path)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert torch.equal(load("emnist", tmp_path, download=True).test.x, fake.test_x)


def test_cifar_unpacks_a_copied_archive_without_network(tmp_path, monkeypatch):
    fake = write_cifar(tmp_path, "cifar100", n_train=300, n_test=100, packed=True)
    cifar_md5_patch(monkeypatch, tmp_path, "cifar100")
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert torch.equal(load("cifar100", tmp_path, download=True).test.x, fake.test_x)


@pytest.mark.parametrize("val_size", [0, 200])
def test_loader_rejects_val_size_outside_train(val_size, tmp_path):
    write_mnist(tmp_path, n_train=200)
    with pytest.raises(UsageError, match="val_size for mnist must be between 1 and 199"):
        DATASETS["mnist"](tmp_path, work_dir=tmp_path / "work", download=False, seed=0, val_size=val_size)


@pytest.mark.slow
def test_mnist_loads_the_real_files_without_writing_beside_them(tmp_path, monkeypatch):
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"real MNIST files not found at {SHARED_MNIST}")
    data_root = SHARED_MNIST.parents[1]
    before = sorted(p.relative_to(data_root) for p in data_root.rglob("*"))
    # The official .gz files pass torchvision's md5 check and are unpacked with no network,
    # in the work dir: the data root (here the shared folder) is only read.
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    splits = DATASETS["mnist"](data_root, work_dir=tmp_path / "work", download=True, seed=0, val_size=5000)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55000, 5000, 10000)
    assert int(splits.test.y[0]) == 7  # the first MNIST test digit is a 7
    assert sorted(Counter(splits.val.y.tolist())) == list(range(10))
    assert sorted(p.relative_to(data_root) for p in data_root.rglob("*")) == before


def _no_network(*args, **kwargs):
    raise AssertionError("this load must not touch the network")
