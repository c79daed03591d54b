"""The fonts the `font` task draws by default: one pinned set of font packages, the same everywhere.

Each package is one Google Fonts family as fontpkg repackages it from github.com/google/fonts:
the font files unmodified, with their licence. pyproject.toml pins the same versions (a test
checks that the two lists agree); the data is drawn from exactly these files, never from
whatever else a machine has installed, so every machine gets the same families and the same
split. A family whose package does not declare an open licence is left out (none is today).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.version import Version

from hpsearch.plumbing.errors import UsageError

# SPDX identifiers of the licences whose fonts we render and redistribute images of.
OPEN_LICENSES = ("OFL-1.1", "Apache-2.0", "UFL-1.0")
PREFIX = "fontpkg-"
# fontpkg-<slug> -> its exact version. Exact, because the fonts are the data: a new release may
# redraw glyphs, and the same seed would then give other images. Edit with pyproject.toml.
PACKAGES: dict[str, str] = {
    "abeezee": "1.3", "abel": "1.3", "abril-fatface": "1.1", "acme": "1.002", "albert-sans": "1.25",
    "alegreya-sans": "2.4", "alfa-slab-one": "2.0", "almarai": "1.100", "alumni-sans": "1.018",
    "amiri": "1.002", "andada-pro": "3.003", "anek-telugu": "1.003", "antic-slab": "1.002",
    "anton": "2.116", "archivo": "2.1", "archivo-black": "1.6", "archivo-narrow": "3.002", "arimo": "1.341",
    "arvo": "1.006", "asap": "3.002", "assistant": "3.0", "atkinson-hyperlegible": "1.006",
    "baloo-2": "1.700", "barlow": "1.408", "barlow-condensed": "1.408", "barlow-semi-condensed": "1.408",
    "be-vietnam-pro": "1.002", "bebas-neue": "2.0", "bitter": "3.21", "black-ops-one": "1.4",
    "bodoni-moda": "2.005", "bricolage-grotesque": "1.1", "bungee": "2.000", "cabin": "3.1",
    "cairo": "3.130", "cardo": "1.045", "catamaran": "2.000", "caveat": "2.0", "chakra-petch": "1.000",
    "changa-one": "1.3", "chivo": "2.002", "cinzel": "2.000", "comfortaa": "3.105", "cormorant": "4.000",
    "cormorant-garamond": "4.1", "crimson-pro": "1.003", "crimson-text": "1.100", "dancing-script": "2.1",
    "delius": "1.001", "dm-mono": "1.000", "dm-sans": "4.4", "dm-serif-display": "5.200",
    "dm-serif-text": "5.200", "domine": "2.000", "dosis": "3.2", "eb-garamond": "1.3",
    "encode-sans": "3.002", "epilogue": "2.112", "exo": "2.001", "exo-2": "2.10", "figtree": "2.2",
    "fira-code": "5.2.post1", "fira-sans": "4.203", "fira-sans-condensed": "4.203", "fjalla-one": "1.2",
    "frank-ruhl-libre": "6.004", "fraunces": "1.0", "fredoka": "2.001", "geist": "1.800",
    "geist-mono": "1.701", "geologica": "1.010", "gravitas-one": "1.001", "great-vibes": "1.103",
    "hammersmith-one": "1.003", "hanken-grotesk": "3.013", "heebo": "3.100", "hind": "2.1",
    "hind-siliguri": "1.1", "ibm-plex-mono": "2.3", "ibm-plex-sans": "3.201",
    "ibm-plex-sans-arabic": "1.101", "ibm-plex-sans-condensed": "1.003", "ibm-plex-serif": "2.006",
    "inconsolata": "3.1", "indie-flower": "2.000", "instrument-sans": "1.0", "instrument-serif": "1.0",
    "inter": "4.1.post1", "inter-tight": "3.4", "jetbrains-mono": "2.211", "josefin-sans": "2.1",
    "jost": "3.710", "kalam": "2.001", "kanit": "2.0", "karla": "2.4", "lato": "2.15",
    "league-spartan": "2.002", "lexend": "1.7", "lexend-deca": "1.007", "libre-baskerville": "2.5",
    "libre-franklin": "3.0", "lilita-one": "1.002", "literata": "3.103", "lobster": "2.100",
    "lobster-two": "1.6", "lora": "3.8", "luckiest-guy": "1.001", "manrope": "4.505", "marcellus": "1.000",
    "maven-pro": "2.103", "merriweather": "2.100", "merriweather-sans": "2.001", "montserrat": "9.0",
    "mukta": "2.538", "mulish": "3.603", "news-cycle": "0.510", "newsreader": "1.003",
    "noto-kufi-arabic": "2.109", "noto-sans": "2.15", "noto-sans-arabic": "2.012",
    "noto-sans-devanagari": "2.007", "noto-sans-display": "2.003", "noto-sans-khmer": "2.4",
    "noto-sans-tamil": "2.004", "noto-sans-telugu": "2.005", "noto-sans-thai": "2.002",
    "noto-serif": "2.15", "nunito": "3.602", "nunito-sans": "3.101", "oleo-script": "1.002",
    "onest": "2.001", "open-sans": "3.3", "orbitron": "2.1", "oswald": "4.103", "outfit": "1.100",
    "overpass": "4.000", "oxygen": "0.201", "pacifico": "3.001", "permanent-marker": "1.001",
    "play": "2.101", "playfair-display": "1.203", "plus-jakarta-sans": "2.71", "poppins": "4.4",
    "press-start-2p": "3.000", "prompt": "1.1", "pt-sans": "2.3", "pt-sans-narrow": "2.003",
    "pt-serif": "1.0", "public-sans": "2.1", "questrial": "2.000", "quicksand": "3.6", "rajdhani": "1.201",
    "raleway": "4.26", "ramabhadra": "1.000", "red-hat-display": "1.30", "red-hat-text": "1.030",
    "rethink-sans": "1.001", "righteous": "1.000", "roboto": "3.15", "roboto-condensed": "3.8",
    "roboto-flex": "3.200", "roboto-mono": "3.1", "roboto-slab": "2.2", "rowdies": "1.000",
    "rubik": "2.300", "russo-one": "1.000", "saira": "1.101", "saira-condensed": "0.072",
    "sanchez": "1.001", "sarabun": "1.000", "satisfy": "1.001", "schibsted-grotesk": "1.100",
    "shadows-into-light": "1.000", "share-tech": "1.100", "signika": "2.003", "slabo-27px": "1.020",
    "smooch-sans": "1.10", "sofia-sans": "4.101", "sora": "2.0", "source-code-pro": "1.26",
    "source-sans-3": "3.52", "source-serif-4": "4.004", "space-grotesk": "2.0", "space-mono": "1.003",
    "spectral": "2.005", "syne": "2.200", "tajawal": "1.700", "teko": "2.000", "titan-one": "1.001",
    "titillium-web": "1.2", "unbounded": "1.701", "urbanist": "1.303", "varela-round": "3.010",
    "viga": "1.001", "vollkorn": "5.001", "work-sans": "2.12", "yanone-kaffeesatz": "2.003",
    "yellowtail": "1.002", "zeyada": "1.002", "zilla-slab": "1.002",
}


@dataclass(frozen=True)
class BundledFamily:
    """One installed font package: its name, version, licence and font files (sorted)."""

    package: str
    version: str
    license: str
    files: tuple[Path, ...]


def bundle_families(packages: dict[str, str] = PACKAGES) -> tuple[list[BundledFamily], dict[str, str]]:
    """The pinned packages' families with an open licence, and those left out (package -> why).

    A package that is missing or at another version is a UsageError: the data would silently
    differ from every other machine's.
    """
    families, dropped, wrong = [], {}, []
    for slug, pinned in sorted(packages.items()):
        name = PREFIX + slug
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} missing")
            continue
        if Version(dist.version) != Version(pinned):  # 1.002 and 1.2 are one version (PEP 440)
            wrong.append(f"{name} {dist.version} (pinned {pinned})")
            continue
        license = dist.metadata.get("License-Expression") or ""
        if license not in OPEN_LICENSES:
            dropped[name] = f"licence {license or 'not declared'}"
            continue
        files = sorted(
            Path(str(dist.locate_file(f))) for f in dist.files or () if f.suffix.lower() in (".ttf", ".otf")
        )
        if not files:
            dropped[name] = "no .ttf/.otf file"
            continue
        families.append(BundledFamily(name, pinned, license, tuple(files)))
    if wrong:
        shown = ", ".join(wrong[:5]) + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        raise UsageError(
            f"the font bundle is not as pinned: {shown}; install the project again (pip install -e .) "
            "so that the generated font data is the same as on every other machine"
        )
    return families, dropped
