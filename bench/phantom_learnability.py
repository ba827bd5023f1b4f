"""Can a small CNN tell the phantom's findings apart? Train on the train split, report test AUROC per finding.

    python bench/phantom_learnability.py --out /tmp/learn --studies 3000 --size 128 --seconds 120

Writes learnability.json (AUROC per finding, settings, timings) into --out. Uncertain (-1.0) labels are left
out of both the loss and the AUROC; blank counts as negative.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

FINDINGS = (
    "Cardiomegaly",
    "Pleural Effusion",
    "Pneumothorax",
    "No Finding",
    "Edema",
    "Lung Opacity",
    "Atelectasis",
    "Lung Lesion",
    "Support Devices",
)
HEADLINE = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "No Finding")


def load_split(root: Path, split: str, px: int) -> tuple[np.ndarray, np.ndarray]:
    """Frontal (PA / AP) images of one split, squashed to px x px, with a label matrix (NaN = uncertain)."""
    meta = pd.read_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz")
    splits = pd.read_csv(root / "mimic-cxr-2.0.0-split.csv.gz")[["dicom_id", "split"]]
    labels = pd.read_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz")
    df = meta.merge(splits, on="dicom_id").merge(labels, on=["subject_id", "study_id"])
    df = df[(df["split"] == split) & df["ViewPosition"].isin(["PA", "AP"])]
    images = np.empty((len(df), px, px), dtype=np.uint8)
    for i, row in enumerate(df.itertuples()):
        sid = str(row.subject_id)
        path = root / "files" / f"p{sid[:2]}" / f"p{sid}" / f"s{row.study_id}" / f"{row.dicom_id}.jpg"
        with Image.open(path) as img:
            images[i] = np.asarray(img.convert("L").resize((px, px), Image.BILINEAR))
    y = df[list(FINDINGS)].to_numpy(dtype=np.float32)
    y = np.where(np.isnan(y), 0.0, y)
    y = np.where(y == -1.0, np.nan, y)
    return images, y


def small_cnn(n_out: int) -> nn.Module:
    """Strided stem, then conv + pool stages: cheap enough for a few epochs per minute on two CPU cores."""
    layers: list[nn.Module] = [
        nn.Conv2d(1, 16, 5, stride=2, padding=2, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
    ]
    c_in = 16
    for c in (32, 64, 96):
        layers += [
            nn.Conv2d(c_in, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        c_in = c
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c_in, n_out)
    )


def rank_auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties averaged; NaN when a class is missing."""
    pos, neg = y == 1, y == 0
    if pos.sum() == 0 or neg.sum() == 0:
        return float("nan")
    ranks = pd.Series(score).rank().to_numpy()
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * neg.sum()))


def train_and_eval(root: Path, px: int, seconds: float, seed: int, threads: int = 1) -> dict:
    torch.manual_seed(seed)
    # one thread by default: on a busy machine, spinning OpenMP threads make a tiny net many times slower
    torch.set_num_threads(threads)
    x_tr, y_tr = load_split(root, "train", px)
    x_te, y_te = load_split(root, "test", px)
    model = small_cnn(len(FINDINGS))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    xt = torch.from_numpy(x_tr).float().div(255).unsqueeze(1)
    yt = torch.from_numpy(y_tr)
    start = time.perf_counter()
    steps, epochs = 0, 0
    gen = torch.Generator().manual_seed(seed)
    model.train()
    while time.perf_counter() - start < seconds:
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            xb, yb = xt[idx], yt[idx]
            shift = torch.randint(-3, 4, (2,), generator=gen)
            xb = torch.roll(xb, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
            mask = ~torch.isnan(yb)
            logits = model(xb)
            loss = nn.functional.binary_cross_entropy_with_logits(logits[mask], yb[mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if time.perf_counter() - start >= seconds:
                break
        epochs += 1
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        xe = torch.from_numpy(x_te).float().div(255).unsqueeze(1)
        scores = torch.cat([model(xe[i : i + 128]) for i in range(0, len(xe), 128)]).numpy()
    aurocs, positives = {}, {}
    for j, name in enumerate(FINDINGS):
        keep = ~np.isnan(y_te[:, j])
        aurocs[name] = rank_auroc(y_te[keep, j], scores[keep, j])
        positives[name] = int((y_te[keep, j] == 1).sum())
    return {
        "auroc": aurocs,
        "test_positives": positives,
        "train_images": len(x_tr),
        "test_images": len(x_te),
        "steps": steps,
        "epochs": epochs,
        "train_seconds": round(train_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="work folder (phantom is written to OUT/phantom)"
    )
    parser.add_argument("--root", type=Path, default=None, help="use an existing phantom tree instead")
    parser.add_argument("--studies", type=int, default=3000)
    parser.add_argument("--size", type=int, default=128, help="phantom image width")
    parser.add_argument("--input", type=int, default=96, help="CNN input size (square)")
    parser.add_argument("--seconds", type=float, default=120.0, help="training time budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.root
    gen_s = 0.0
    if root is None:
        from cxr_ldm.phantom import generate_phantom

        root = args.out / "phantom"
        start = time.perf_counter()
        generate_phantom(root, args.studies, args.size, args.seed, progress=sys.stderr.isatty())
        gen_s = time.perf_counter() - start
    result = train_and_eval(root, args.input, args.seconds, args.seed, args.threads)
    result.update(
        {"studies": args.studies, "size": args.size, "input": args.input, "generate_seconds": round(gen_s, 1)}
    )
    (args.out / "learnability.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['train_images']} train / {result['test_images']} test frontal images, {result['epochs']} epochs"
    )
    print(f"{'finding':<20} {'AUROC':>6} {'test positives':>15}")
    for name in FINDINGS:
        flag = "  *" if name in HEADLINE else ""
        print(f"{name:<20} {result['auroc'][name]:6.3f} {result['test_positives'][name]:>15}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
