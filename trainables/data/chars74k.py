"""Chars74K "EnglishFnt" on disk, or downloaded once into the cache.

The data root is only read: a user's ``<root>/English/Fnt`` tree is used in place, and a user's
copy of the archive (``<root>/EnglishFnt.tgz``) or a downloaded one is unpacked under
``<work_dir>/chars74k``, never into root. Downloading is the loader's ``download`` flag
(``--offline`` turns it off): off, a missing tree is a one-line UsageError saying what to put where.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
from pathlib import Path

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.data.torchvision_sets import _DOWNLOAD_ERRORS, DOWNLOAD_TIMEOUT_S

URL = "http://www.ee.surrey.ac.uk/CVSSP/demos/chars74k/EnglishFnt.tgz"  # the dataset page's link
ARCHIVE = "EnglishFnt.tgz"
FNT = Path("English") / "Fnt"
# No checksum for EnglishFnt.tgz is published: not on the dataset page, and none was found in
# public code, docs or issues (searched for "EnglishFnt.tgz" with md5/sha256). Until one is,
# an archive is checked by its layout (LAYOUT below) and its sha256 is printed and kept in
# <work_dir>/chars74k/COMPLETE, so a run records which bytes it used. Set this when one is known.
SHA256: str | None = None
# 62 Sample folders ('0'-'9', 'A'-'Z', 'a'-'z') of 1,016 PNGs each (254 fonts x 4 styles).
LAYOUT = (62, 1016)
_CHUNK = 1 << 20


def find_or_fetch(root: Path, work_dir: Path, download: bool) -> Path:
    """The ``English/Fnt`` folder to read: root's, an earlier unpacking, or a fresh one."""
    if (root / FNT).is_dir():
        return root / FNT
    home = work_dir / "chars74k"
    if (home / "COMPLETE").is_file():
        return home / FNT
    archive = root / ARCHIVE
    if not archive.is_file():
        if not download:
            raise UsageError(
                f"Chars74K EnglishFnt not found under {root / FNT} (downloading is off): put {ARCHIVE} "
                f"from {URL} in {root}, or its English/Fnt/ folder, or run without --offline"
            )
        archive = _download(home)
    digest = _sha256(archive)
    if SHA256 is not None and digest != SHA256:
        if archive.parent == home:
            archive.unlink()  # a partial or altered download must not be reused
        raise UsageError(
            f"{archive} has sha256 {digest}, expected {SHA256}: a partial download or another release; "
            f"fetch {ARCHIVE} again from {URL}"
        )
    _unpack(archive, home)
    (home / "COMPLETE").write_text(f"{digest}  {ARCHIVE}\n")
    print(f"font: unpacked Chars74K {ARCHIVE} (sha256 {digest}) into {home}")
    return home / FNT


def _download(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    target, part = home / ARCHIVE, home / (ARCHIVE + ".part")
    print(f"font: downloading {URL}")
    try:
        with urllib.request.urlopen(URL, timeout=DOWNLOAD_TIMEOUT_S) as response, part.open("wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except _DOWNLOAD_ERRORS as err:
        part.unlink(missing_ok=True)
        raise UsageError(
            f"Chars74K {ARCHIVE} could not be downloaded from {URL} ({err}); put it, or its "
            "English/Fnt/ folder, in the data dir"
        ) from err
    part.replace(target)
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _unpack(archive: Path, home: Path) -> None:
    """Unpack into a scratch folder, check the layout, then move English/ into place."""
    scratch = home / "unpacking"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        # The "data" filter refuses absolute paths, links out of the folder and device files.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(scratch, **safe)
    except (tarfile.TarError, OSError, EOFError) as err:
        shutil.rmtree(scratch, ignore_errors=True)
        raise UsageError(
            f"{archive} is not a readable .tgz ({err}); fetch {ARCHIVE} again from {URL}"
        ) from err
    samples = sorted(p for p in (scratch / FNT).glob("Sample*") if p.is_dir())
    sizes = {len(list(p.glob("*.png"))) for p in samples}
    if len(samples) != LAYOUT[0] or sizes != {LAYOUT[1]}:
        shutil.rmtree(scratch, ignore_errors=True)
        raise UsageError(
            f"{archive} does not hold EnglishFnt's layout ({LAYOUT[0]} English/Fnt/SampleNNN folders of "
            f"{LAYOUT[1]} PNGs; found {len(samples)} folders of {sorted(sizes)}); fetch it again from {URL}"
        )
    shutil.rmtree(home / "English", ignore_errors=True)
    (scratch / "English").replace(home / "English")
    shutil.rmtree(scratch)
