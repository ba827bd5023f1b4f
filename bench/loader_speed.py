"""Images per second of the MIMIC-CXR loader against torchxrayvision's MIMIC_Dataset, same files, one process.

Both read the same full-size JPEGs of a phantom MIMIC-CXR tree and produce 512 px images:
torchxrayvision with its documented transform (XRayCenterCrop + XRayResizer(512)), this project with
draft-mode JPEG decoding (`cxr_ldm.data.image_io.load_gray`) through `MimicCxrDataset`. Files are read once
before timing so both runs see a warm page cache.

    python bench/loader_speed.py --studies 50 --size 2500 --out /tmp/bench-phantom
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np


def make_tree(out: Path, studies: int, size: int, seed: int) -> Path:
    """Reuse `out` if it already holds a phantom of these parameters, else generate one."""
    manifest = out / "phantom-manifest.json"
    if manifest.is_file():
        params = json.loads(manifest.read_text()).get("params", {})
        if params.get("studies") == studies and params.get("size") == size and params.get("seed") == seed:
            return out
    from cxr_ldm.phantom import generate_phantom

    start = time.perf_counter()
    generate_phantom(out, studies, size, seed, progress=True)
    print(
        f"generated {studies} phantom studies at {size} px in {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    return out


def time_items(dataset, indices: list[int]) -> tuple[float, object]:
    start = time.perf_counter()
    item = None
    for i in indices:
        item = dataset[i]
    return time.perf_counter() - start, item


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=50)
    parser.add_argument(
        "--size", type=int, default=2500, help="phantom image width in px (heights follow the view)"
    )
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cxr-ldm-bench-phantom"))
    parser.add_argument("--repeats", type=int, default=1, help="passes over the images per loader")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch
    import torchvision

    from cxr_ldm.data.mimic_dataset import MimicCxrDataset
    from cxr_ldm.data.mimic_index import IndexOptions, build_index
    from cxr_ldm.xrv import xrv

    torch.set_num_threads(1)
    root = make_tree(args.out, args.studies, args.size, args.seed)
    views = ["PA", "AP", "LATERAL", "LL", "AP AXIAL"]

    reference = xrv.datasets.MIMIC_Dataset(
        imgpath=str(root / "files"),
        csvpath=str(root / "mimic-cxr-2.0.0-chexpert.csv.gz"),
        metacsvpath=str(root / "mimic-cxr-2.0.0-metadata.csv.gz"),
        views=views,
        unique_patients=False,
        transform=torchvision.transforms.Compose(
            [xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(args.image_size)]
        ),
    )
    options = IndexOptions(
        root=str(root),
        views=["ALL"],
        min_chars=0,
        max_chars=None,
        no_finding_cap=None,
        text_section="impression_or_findings",
    )
    frame = build_index(options).frame
    common = sorted(set(frame["dicom_id"]) & set(reference.csv["dicom_id"].astype(str)))
    frame = frame[frame["dicom_id"].isin(common)].reset_index(drop=True)
    ours = MimicCxrDataset(
        frame, options.images_dir, image_size=args.image_size, resize="center_crop", channels=3
    )
    position = {d: i for i, d in enumerate(reference.csv["dicom_id"].astype(str))}
    ref_indices = [position[d] for d in frame["dicom_id"]] * args.repeats
    our_indices = list(range(len(frame))) * args.repeats

    for path in frame["path"]:  # warm the page cache for both
        (options.images_dir / path).read_bytes()
    sizes = [tuple(int(v) for v in reference[ref_indices[0]]["img"].shape)]
    pixels = np.mean([(options.images_dir / p).stat().st_size for p in frame["path"]]) / 1e6

    ref_time, ref_item = time_items(reference, ref_indices)
    our_time, our_item = time_items(ours, our_indices)
    n = len(our_indices)
    ref_rate, our_rate = n / ref_time, n / our_time
    print(
        f"images: {len(frame)} JPEGs (mean {pixels:.2f} MB), width {args.size} px, output {args.image_size} px, x{args.repeats}"
    )
    print(
        f"torchxrayvision MIMIC_Dataset + XRayCenterCrop + XRayResizer({args.image_size}): {ref_rate:8.2f} images/s  out {sizes[0]}"
    )
    print(
        f"cxr_ldm MimicCxrDataset (draft decode):                        {our_rate:8.2f} images/s  out {tuple(our_item['pixel_values'].shape)}"
    )
    print(f"speed-up: {our_rate / ref_rate:.1f}x")
    del ref_item
    return 0


if __name__ == "__main__":
    sys.exit(main())
