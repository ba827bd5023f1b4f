"""`python -m cxr_ldm phantom`: write a synthetic MIMIC-CXR-JPG tree with reports for tests and benchmarks."""

from __future__ import annotations

import argparse
import sys
import time

from cxr_ldm.commands.argument_types import bounded_int, fraction

DESCRIPTION = "write a synthetic MIMIC-CXR-JPG tree (images, reports, label CSVs) for tests and benchmarks"


def build_parser() -> argparse.ArgumentParser:
    from cxr_ldm.phantom.generate import MAX_SIZE

    parser = argparse.ArgumentParser(
        prog="python -m cxr_ldm phantom",
        description=DESCRIPTION + ". Not medical data.",
    )
    parser.add_argument(
        "--out", required=True, help="output folder (created; must be empty or a previous phantom)"
    )
    parser.add_argument(
        "--studies", type=bounded_int(1, 10_000_000), default=200, help="number of studies (default 200)"
    )
    parser.add_argument(
        "--size",
        type=bounded_int(16, MAX_SIZE),
        default=256,
        help="image width (Columns) in pixels; heights follow each view's aspect, e.g. 2544 gives 2544 x ~3056 PA",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed writes the same bytes"
    )
    parser.add_argument(
        "--corrupt",
        type=fraction,
        default=0.0,
        metavar="FRACTION",
        help="fraction of studies to damage like a real download (listed in phantom-manifest.json)",
    )
    parser.add_argument(
        "--workers",
        type=bounded_int(1, 256),
        default=None,
        help="drawing processes (default: up to 8, one per CPU, for 200+ studies; else 1)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    from cxr_ldm.phantom import generate_phantom

    start = time.perf_counter()
    try:
        manifest = generate_phantom(
            args.out,
            args.studies,
            args.size,
            args.seed,
            corrupt=args.corrupt,
            progress=not args.quiet,
            workers=args.workers,
        )
    except (FileExistsError, ValueError) as error:
        print(f"cxr_ldm phantom: {error}", file=sys.stderr)
        return 2
    counts = manifest["counts"]
    faults = sum(len(v) for v in manifest["faults"].values())
    print(
        f"wrote {counts['studies']} studies, {counts['images']} images of {counts['patients']} patients "
        f"to {args.out} in {time.perf_counter() - start:.1f} s ({faults} injected faults)"
    )
    return 0
