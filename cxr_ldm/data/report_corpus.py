"""A corpus of real radiology-report sentences: the Indiana University chest X-ray reports (3,955 studies).

The reports come with the torchxrayvision wheel (`torchxrayvision/data/NLMCXR_reports.tgz`, the Open-i
`ecgen-radiology/*.xml` files), so they are on every machine that installs the project. Each report's
FINDINGS and IMPRESSION texts are split into sentences; de-identified spans (`XXXX`) become `___`, as
MIMIC-CXR writes them. Text only, never an image: a text encoder learns the language of reports from it.

A file that cannot be read as a report archive is a `ConfigError` naming it.
"""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

from cxr_ldm.errors import ConfigError

SECTIONS = ("FINDINGS", "IMPRESSION")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_DEIDENTIFIED = re.compile(r"X{3,}")  # also glued to a word: "4XXXX", "XXXXPM"


def iu_reports_archive() -> Path:
    """The IU report archive shipped inside the installed torchxrayvision wheel."""
    from cxr_ldm.xrv import xrv

    return Path(xrv.__file__).resolve().parent / "data" / "NLMCXR_reports.tgz"


def split_sentences(text: str) -> list[str]:
    """One report section's text as sentences, whitespace collapsed, de-identified spans as `___`."""
    text = _DEIDENTIFIED.sub("___", " ".join(text.split()))
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) > 1]


def read_report_sentences(archive: str | Path | None = None) -> list[str]:
    """Every sentence of every report's FINDINGS and IMPRESSION, in the archive's (sorted) file order."""
    path = Path(archive) if archive is not None else iu_reports_archive()
    if not path.is_file():
        raise ConfigError(
            f"report corpus {path}: no such file (give the IU NLMCXR_reports.tgz, or leave it unset)"
        )
    sentences: list[str] = []
    try:
        with tarfile.open(path, "r:*") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")),
                             key=lambda m: m.name)  # fmt: skip
            for member in members:
                root = ET.fromstring(tar.extractfile(member).read())
                for node in root.iter("AbstractText"):
                    if node.get("Label") in SECTIONS and node.text:
                        sentences.extend(split_sentences(node.text))
    except (tarfile.TarError, ET.ParseError, OSError, EOFError, zlib.error) as error:  # EOFError: a cut gzip
        raise ConfigError(
            f"report corpus {path}: not a readable archive of report XML files ({error})"
        ) from error
    if not sentences:
        raise ConfigError(f"report corpus {path}: no FINDINGS or IMPRESSION text in any of its XML files")
    return sentences
