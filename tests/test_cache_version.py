"""A prepared-data cache is read only by the code version that wrote it: CACHE_VERSION is part of
its key, so a cache in an older format is built anew rather than read with fallbacks."""

from __future__ import annotations

import pytest
import torch

from hpsearch.trainables.data import registry
from hpsearch.trainables.data.registry import prepare
from hpsearch.trainables.data.splits import Splits
from hpsearch.trainables.tasks import VAL_SIZE
from tests.fake_datasets import write_mnist


def test_a_cache_written_by_another_cache_version_is_not_read(tmp_path, monkeypatch):
    write_mnist(tmp_path / "data", n_train=VAL_SIZE["mnist"] + 100, n_test=20)

    def load():
        return prepare("mnist", tmp_path / "data", cache_dir=tmp_path / "cache", download=False, val_size=50)

    with monkeypatch.context() as mp:
        mp.setattr(registry, "CACHE_VERSION", registry.CACHE_VERSION - 1)
        load()
    (old,) = (tmp_path / "cache").glob("mnist-*.pt")
    # An older format: no source, and other images, so that reading it would show.
    payload = torch.load(old, weights_only=True)
    del payload["source"]
    payload["train"]["x"].zero_()
    torch.save(payload, old)
    data = load()
    assert data.source.startswith("mnist (torchvision)") and data.train.x.any()  # built anew
    assert len(list((tmp_path / "cache").glob("mnist-*.pt"))) == 2
    with pytest.raises(KeyError, match="source"):  # the older format itself is not readable
        Splits.load(old)
