"""`python -m cxr_ldm.experiments.tiny_pretrained`: build the demo's tiny "pretrained" pipeline
(`build_tiny_pretrained` in cxr_ldm/training/tiny_pretrained.py) from the command line."""

from __future__ import annotations

import argparse
import json
import sys

from cxr_ldm.errors import ConfigError
from cxr_ldm.training.tiny_pretrained import build_tiny_pretrained


def main(argv: list[str] | None = None, prog: str = "python -m cxr_ldm.experiments.tiny_pretrained") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description='the demo\'s tiny "pretrained" pipeline from three `fit` configs'
    )
    parser.add_argument("--out", default="artifacts/tiny-pretrained")
    parser.add_argument("--work", default="runs/tiny-pretrain", help="phantom, caches, checkpoints, logs")
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--vae-steps", type=int, default=1200)
    parser.add_argument("--unet-steps", type=int, default=4000)
    parser.add_argument("--text-steps", type=int, default=3000, help="stage 0: the text encoder's language")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-after", choices=["text", "vae", "unet"], default="unet")
    parser.add_argument("--image-size", type=int, default=None, help="default: the stage configs' 64 px")
    args = parser.parse_args(argv)
    try:
        info = build_tiny_pretrained(
            args.out, args.work, args.studies, args.vae_steps, args.unet_steps, args.text_steps, args.batch_size,
            args.seed, args.stop_after, args.image_size,
        )  # fmt: skip
    except ConfigError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
