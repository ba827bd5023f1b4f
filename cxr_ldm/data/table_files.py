"""Noticing a truncated table file: a cut-off gzip stream, a last row cut mid-way, a row short of fields.

A download or copy that stopped early leaves a file that pandas or the csv module read without complaint:
the last row just has fewer fields, filled with blanks. The checks here turn that into an error naming the
file, for every format the readers accept (`.csv`, `.csv.gz`, and `.txt` prompt lists).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from pathlib import Path

from cxr_ldm.errors import ConfigError


class TruncatedTableError(ConfigError):
    """A table file ends early; the message names the file and the row."""


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def read_table_bytes(path: str | os.PathLike) -> bytes:
    """The file's (decompressed) bytes; a gzip stream that ends early is a TruncatedTableError."""
    path = Path(path)
    try:
        with _open_bytes(path) as handle:
            return handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise TruncatedTableError(
            f"{path} is truncated or damaged ({error}); download or copy it again"
        ) from error


def check_complete(path: str | os.PathLike, require_final_newline: bool = True) -> None:
    """Raise TruncatedTableError when a CSV (plain or gzip) ends early.

    Checks: the gzip stream is whole; every row has as many fields as the header; and, for machine-written
    tables (`require_final_newline`), the file ends with a newline, as every complete MIMIC-CXR table does.
    """
    path = Path(path)
    data = read_table_bytes(path)
    if not data.strip():
        return
    if require_final_newline and not data.endswith(b"\n"):
        raise TruncatedTableError(
            f"{path} ends in the middle of a row (no final newline): the file is truncated; "
            "download or copy it again"
        )
    text = data.decode("utf-8", errors="replace")
    rows = csv.reader(io.StringIO(text))
    header = next(rows, [])
    for number, row in enumerate(rows, start=2):
        if row and len(row) != len(header):
            raise TruncatedTableError(
                f"{path} line {number} has {len(row)} fields but the header has {len(header)}: "
                "the file is truncated or a row is damaged; fix it or copy it again"
            )
