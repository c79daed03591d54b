"""Chars74K EnglishFnt: split by font (styles measured from the images), shrunk by counts, and
downloaded on request from a loopback server into the cache, never into the data dir."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hpsearch.plumbing.errors import UsageError
from hpsearch.search import prepare, run
from hpsearch.search import train as train_cli
from hpsearch.trainables.data import chars74k
from hpsearch.trainables.data.font import load_font, resolve_source
from hpsearch.trainables.data.font_folders import load_chars74k, style_layout

ALL = {"train": None, "val": None, "test": None}


def _styled_png(path: Path, font: int, bold: bool, italic: bool, sample: int) -> None:
    """A tiny 'glyph': an outline whose size is the font's design, thick if bold, slanted if italic."""
    image = Image.new("L", (32, 32), 255)
    w, h, lean = 8 + 2 * (font % 5), 16 + 2 * (font % 3), 6 if italic else 0
    top, left = (32 - h) // 2, (32 - w - lean) // 2
    points = [(left + lean, top), (left + lean + w, top), (left + w, top + h), (left, top + h)]
    draw = ImageDraw.Draw(image)
    draw.line([*points, points[0]], fill=0, width=4 if bold else 1)
    draw.point((2 + sample % 20, 2), fill=0)  # each character a little different
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def chars74k_tree(root: Path, samples: tuple[int, ...], fonts: int, layout: str = "consecutive") -> None:
    """EnglishFnt's layout under root: font f's style s is index 4f+s+1, or s*fonts+f+1 if strided."""
    for sample in samples:
        for f in range(fonts):
            for s, (bold, italic) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
                k = 4 * f + s + 1 if layout == "consecutive" else s * fonts + f + 1
                path = root / "English" / "Fnt" / f"Sample{sample:03d}" / f"img{sample:03d}-{k:05d}.png"
                _styled_png(path, f, bool(bold), bool(italic), sample)


def _font_of(index: int, fonts: int, layout: str) -> int:
    return (index - 1) // 4 if layout == "consecutive" else (index - 1) % fonts


@pytest.mark.parametrize("layout", ["consecutive", "strided"])
def test_load_chars74k_measures_the_style_layout_and_splits_by_font(tmp_path, layout, capsys):
    chars74k_tree(tmp_path, (1, 11, 37), fonts=10, layout=layout)  # '0', 'A', 'a'
    fnt = tmp_path / "English" / "Fnt"
    splits, fonts = load_chars74k(fnt, "0Aa", seed=0, counts=ALL, work_dir=tmp_path / "work")
    manifest = json.loads((tmp_path / "work" / "font-chars74k" / "manifest-0.json").read_text())
    assert manifest["layout"] == layout and f"grouped {layout}" in capsys.readouterr().out
    assert fonts == {"train": 7, "val": 2, "test": 1}  # 716:150:150 of 10 fonts, largest remainder
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3 * 28, 3 * 8, 3 * 4)
    # Every font's four indices are listed together and under one split only.
    in_split = {f: name for name, part in manifest["splits"].items() for f in part["fonts"]}
    assert len(in_split) == 10
    for members in manifest["fonts"].values():
        assert len({_font_of(k, 10, layout) for k in members}) == 1 and len(members) == 4


def test_style_layout_scores_the_true_grouping_high_and_a_wrong_one_low():
    rng = np.random.default_rng(0)
    style = np.tile([[0, 0], [1, 0], [0, 1], [1, 1]], (25, 1)).astype(float)  # 25 fonts, consecutive
    design = np.repeat(rng.normal(size=(25, 2)), 4, axis=0)
    layout, scores = style_layout(style + 0.3 * design + 0.05 * rng.normal(size=(100, 2)))
    assert layout == "consecutive" and scores["consecutive"] > 0.8 > 0.2 > scores["strided"]
    with pytest.warns(UserWarning, match="layout unclear"):
        assert style_layout(rng.normal(size=(100, 2)))[0] == "consecutive"


def test_load_chars74k_counts_take_whole_fonts_and_never_grow(tmp_path):
    chars74k_tree(tmp_path, (11, 37), fonts=12)
    fnt = tmp_path / "English" / "Fnt"
    full, all_fonts = load_chars74k(fnt, "Aa", seed=0, counts=ALL)
    quick, quick_fonts = load_chars74k(fnt, "Aa", seed=0, counts={"train": 6, "val": 2, "test": 100})
    assert (len(quick.train), len(quick.val)) == (2 * 6, 2 * 2)
    # The fonts the images come from: 6 images = 1.5 fonts of 4 styles, 2 = half of one.
    assert quick_fonts == {"train": 2, "val": 1, "test": all_fonts["test"]}
    assert len(quick.test) == len(full.test) < 2 * 100  # a count above what there is takes it all
    # Quick images are a subset of the full split: no font moves to another split.
    for name in ("train", "val", "test"):
        whole = {bytes(x) for x in getattr(full, name).x.numpy()}
        assert {bytes(x) for x in getattr(quick, name).x.numpy()} <= whole


def test_load_font_quick_counts_shrink_chars74k_instead_of_splitting_it(tmp_path):
    chars74k_tree(tmp_path, (11,), fonts=12)
    splits = load_font(
        tmp_path, work_dir=tmp_path / "w", download=False, seed=0, classes="A", train=3, val=2, test=2
    )
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 2, 2)
    assert splits.families == {"train": 1, "val": 1, "test": 1}  # 3 and 2 images: one font's styles


def test_load_font_auto_picks_imagefolder_then_chars74k_then_generate(tmp_path):
    assert resolve_source(tmp_path, "auto") == "generate"
    chars74k_tree(tmp_path, (11,), fonts=3)
    assert resolve_source(tmp_path, "auto") == "chars74k"
    splits = load_font(tmp_path, work_dir=tmp_path / "work", download=False, seed=0, classes="A")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 4, 4)  # one font each
    for split in ("train", "val", "test"):
        path = tmp_path / "font" / split / "A" / "x.png"
        path.parent.mkdir(parents=True)
        Image.new("L", (32, 32), 255).save(path)
    assert resolve_source(tmp_path, "auto") == "imagefolder"
    assert (
        len(load_font(tmp_path, work_dir=tmp_path / "work", download=False, seed=0, classes="A").train) == 1
    )


@pytest.fixture
def archive_server(tmp_path, monkeypatch):
    """EnglishFnt.tgz in the real layout (3 samples, 3 fonts) on a loopback HTTP server."""
    tree = tmp_path / "tree"
    chars74k_tree(tree, (1, 11, 37), fonts=3)
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "EnglishFnt.tgz", "w:gz") as tar:
        tar.add(tree / "English", arcname="English")
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=served))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    digest = hashlib.sha256((served / "EnglishFnt.tgz").read_bytes()).hexdigest()
    monkeypatch.setattr(chars74k, "URL", f"http://127.0.0.1:{server.server_port}/EnglishFnt.tgz")
    monkeypatch.setattr(chars74k, "SHA256", digest)
    monkeypatch.setattr(chars74k, "LAYOUT", (3, 12))
    yield requests
    server.shutdown()
    server.server_close()


def test_chars74k_source_downloads_verifies_and_unpacks_into_the_cache(tmp_path, archive_server):
    root, work = tmp_path / "data", tmp_path / "cache" / "work"
    root.mkdir()
    splits = load_font(root, work_dir=work, download=True, seed=0, source="chars74k", classes="0Aa")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 12, 12)
    assert archive_server == ["/EnglishFnt.tgz"]
    assert list(root.iterdir()) == []  # the data dir is only read
    assert (work / "chars74k" / "English" / "Fnt" / "Sample011").is_dir()
    assert chars74k.SHA256 in (work / "chars74k" / "COMPLETE").read_text()
    again = load_font(root, work_dir=work, download=False, seed=0, source="chars74k", classes="0Aa")
    assert again.digest() == splits.digest() and len(archive_server) == 1  # unpacked once


def test_chars74k_download_with_a_wrong_checksum_is_refused_and_not_kept(
    tmp_path, archive_server, monkeypatch
):
    monkeypatch.setattr(chars74k, "SHA256", "0" * 64)
    with pytest.raises(UsageError, match="expected 0000"):
        load_font(tmp_path, work_dir=tmp_path / "w", download=True, seed=0, source="chars74k", classes="A")
    assert not (tmp_path / "w" / "chars74k" / "English").exists()
    assert not (tmp_path / "w" / "chars74k" / "EnglishFnt.tgz").exists()


def test_chars74k_offline_never_touches_the_network_and_says_what_is_missing(tmp_path, archive_server):
    with pytest.raises(UsageError) as err:
        load_font(tmp_path, work_dir=tmp_path / "w", download=False, seed=0, source="chars74k", classes="A")
    message = str(err.value)
    assert "downloading is off" in message and "EnglishFnt.tgz" in message and chars74k.URL in message
    assert "\n" not in message and archive_server == []


def test_chars74k_archive_copied_into_the_data_dir_is_unpacked_offline(tmp_path, archive_server):
    root = tmp_path / "data"
    root.mkdir()
    served = tmp_path / "served" / "EnglishFnt.tgz"
    (root / "EnglishFnt.tgz").write_bytes(served.read_bytes())
    splits = load_font(root, work_dir=tmp_path / "w", download=False, seed=0, source="chars74k", classes="A")
    assert len(splits.train) == 4 and archive_server == []
    assert sorted(p.name for p in root.iterdir()) == ["EnglishFnt.tgz"]


def test_chars74k_archive_in_the_wrong_layout_is_refused(tmp_path, archive_server, monkeypatch):
    monkeypatch.setattr(chars74k, "LAYOUT", (62, 1016))
    with pytest.raises(UsageError, match="does not hold EnglishFnt's layout"):
        load_font(tmp_path, work_dir=tmp_path / "w", download=True, seed=0, source="chars74k", classes="A")


# Too few fonts in val or test: refused by every command that loads font data, unless allowed


@pytest.fixture(scope="module")
def small_font_root(tmp_path_factory) -> Path:
    """A Chars74K tree of 12 fonts for the built-in font space: split 8 / 2 / 2 fonts."""
    root = tmp_path_factory.mktemp("small_font")
    chars74k_tree(root / "data", tuple(range(1, 63)), fonts=12)
    return root


def _font_args(root: Path) -> list[str]:
    dirs = ["--data-dir", str(root / "data"), "--cache-dir", str(root / "cache")]
    return ["--space", "font", *dirs, "--offline"]


def test_prepare_refuses_a_small_font_split_built_or_cached_unless_allowed(small_font_root, capsys):
    args = _font_args(small_font_root)
    with pytest.raises(UsageError, match="train 8, val 2, test 2; val and test need at least 5"):
        prepare.main(args)
    assert prepare.main([*args, "--allow-small-split"]) == 0
    assert "font data: 12 families -> train 8, val 2, test 2\n" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--allow-small-split"):  # the cache it left is checked too
        prepare.main(args)


def test_train_refuses_a_small_font_split_and_trains_on_it_when_allowed(small_font_root, monkeypatch):
    args = [*_font_args(small_font_root), "--gpus", "0", "--epochs", "1"]
    with pytest.raises(UsageError, match="--allow-small-split"):
        train_cli.main(args)

    class Reached(Exception):
        pass

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(train_cli, "train", reached)  # past the data: no need to train for real
    with pytest.raises(Reached):
        train_cli.main([*args, "--allow-small-split"])


def test_search_refuses_a_small_font_split_before_it_starts(small_font_root, tmp_path):
    with pytest.raises(UsageError, match="--allow-small-split"):
        run.main([*_font_args(small_font_root), "--gpus", "0", "--results-dir", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []  # nothing started
    assert run.parse_args(["--space", "font", "--allow-small-split"]).allow_small_split
