"""`python -m cxr_ldm export`: a checkpoint to a diffusers pipeline directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = "write a checkpoint as a diffusers pipeline directory (safetensors)"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxr_ldm export", description=DESCRIPTION)
    parser.add_argument("--ckpt", required=True, type=Path, help="a LatentDiffusion checkpoint (.ckpt)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--ema", action="store_true", help="export the EMA weights instead of the raw ones")
    parser.add_argument("--scheduler", default="pndm", help="inference scheduler saved with the pipeline")
    args = parser.parse_args(argv)
    if not args.ckpt.is_file():
        parser.error(f"checkpoint {args.ckpt} does not exist")

    from cxr_ldm.export import export_pipeline
    from cxr_ldm.models import LatentDiffusion

    model = LatentDiffusion.load_from_checkpoint(args.ckpt, map_location="cpu")
    try:
        out = export_pipeline(model, args.out, ema=args.ema, scheduler=args.scheduler)
    except ValueError as error:
        print(f"export: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {out} ({'EMA' if args.ema else 'raw'} weights); load it with "
        f"diffusers.StableDiffusionPipeline.from_pretrained('{out}')"
    )
    return 0
