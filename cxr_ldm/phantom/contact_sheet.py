"""A contact sheet PNG of phantom studies per finding, captioned with their impressions, to eyeball the data.

python -m cxr_ldm.phantom.contact_sheet --out sheet.png [--root EXISTING_PHANTOM] [--per-finding 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from cxr_ldm.phantom.generate import FINDINGS_FILE, generate_phantom
from cxr_ldm.phantom.reports import extract_impression

ROWS = (
    "No Finding",
    "Cardiomegaly",
    "Pleural Effusion",
    "Pneumothorax",
    "Consolidation",
    "Lung Opacity",
    "Edema",
    "Atelectasis",
    "Lung Lesion",
    "Support Devices",
)
TILE = 200
CAPTION_LINES = 6


def _pick_studies(root: Path, finding: str, n: int) -> list[tuple[int, int, str]]:
    """(subject, study, attributes) of studies with `finding` = 1.0, fewest other findings first."""
    truth = pd.read_csv(root / FINDINGS_FILE, keep_default_na=False)
    pos = truth[truth["label"] == 1.0]
    burden = pos[~pos["finding"].isin(["No Finding", "Support Devices"])].groupby("study_id").size()
    rows = pos[pos["finding"] == finding].copy()
    rows["burden"] = rows["study_id"].map(burden).fillna(0)
    if finding == "No Finding":
        devices = set(pos.loc[pos["finding"] == "Support Devices", "study_id"])
        rows = rows[~rows["study_id"].isin(devices)]
    rows = rows.sort_values(["burden", "study_id"]).drop_duplicates("study_id").head(n)
    out = []
    for r in rows.itertuples():
        parts = [
            str(v) for v in (r.side, r.size, r.location, r.detail) if v and not str(v).startswith("ratio")
        ]
        if r.side and r.location and str(r.location).startswith(str(r.side)):
            parts = parts[1:]
        attrs = " ".join(parts)
        if str(r.detail).startswith("ratio="):
            attrs = (attrs + f" CTR {float(str(r.detail)[6:]):.2f}").strip()
        out.append((int(r.subject_id), int(r.study_id), attrs))
    return out


def _tile(
    root: Path, meta: pd.DataFrame, subject: int, study: int, want_lateral: bool
) -> tuple[Image.Image, str]:
    rows = meta[meta["study_id"] == study]
    frontal = rows[rows["ViewPosition"].isin(["PA", "AP"])]
    lateral = rows[rows["ViewPosition"].isin(["LATERAL", "LL"])]
    pick = lateral if (want_lateral and len(lateral)) else (frontal if len(frontal) else rows)
    row = pick.iloc[0]
    sid = str(subject)
    path = root / "files" / f"p{sid[:2]}" / f"p{sid}" / f"s{study}" / f"{row.dicom_id}.jpg"
    canvas = Image.new("L", (TILE, TILE), 30)
    try:
        with Image.open(path) as img:
            img = img.convert("L")
            img.thumbnail((TILE, TILE))
    except (
        OSError,
        SyntaxError,
    ):  # a damaged file of a `--corrupt` phantom (or a missing one): an empty tile
        return canvas, f"{row.ViewPosition} (unreadable)"
    canvas.paste(img, ((TILE - img.width) // 2, (TILE - img.height) // 2))
    return canvas, str(row.ViewPosition)


def make_contact_sheet(root: Path, out: Path, per_finding: int = 4) -> Path:
    """Draw the sheet from an existing phantom tree."""
    meta = pd.read_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz")
    font = ImageFont.load_default()
    label_w, cap_h = 130, 12 * CAPTION_LINES + 4
    cols = per_finding + 1
    sheet = Image.new(
        "RGB", (label_w + cols * (TILE + 6), len(ROWS) * (TILE + cap_h + 8) + 8), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for r, finding in enumerate(ROWS):
        y0 = 8 + r * (TILE + cap_h + 8)
        draw.text((6, y0 + TILE // 2), finding, fill=(0, 0, 0), font=font)
        picks = _pick_studies(root, finding, per_finding)
        tiles = [(p, False) for p in picks] + ([(picks[0], True)] if picks else [])
        for c, ((subject, study, attrs), lateral) in enumerate(tiles):
            x0 = label_w + c * (TILE + 6)
            tile, view = _tile(root, meta, subject, study, lateral)
            sheet.paste(tile.convert("RGB"), (x0, y0))
            sid = str(subject)
            report = root / "files" / f"p{sid[:2]}" / f"p{sid}" / f"s{study}.txt"
            impression = extract_impression(report.read_text(encoding="utf-8", errors="replace"))
            lines = textwrap.wrap(f"[{view}] {attrs.replace(',', ', ')}".strip(), 34)[:2] + textwrap.wrap(
                impression, 34
            )
            lines = lines[:CAPTION_LINES]
            for k, line in enumerate(lines):
                draw.text(
                    (x0, y0 + TILE + 2 + 12 * k), line, fill=(0, 0, 0) if k else (0, 70, 160), font=font
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="contact sheet of phantom studies per finding")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--root", type=Path, default=None, help="existing phantom tree (default: make one)")
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-finding", type=int, default=4)
    args = parser.parse_args(argv)
    if args.root is not None:
        make_contact_sheet(args.root, args.out, args.per_finding)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            generate_phantom(Path(tmp) / "phantom", args.studies, args.size, args.seed, progress=False)
            make_contact_sheet(Path(tmp) / "phantom", args.out, args.per_finding)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
