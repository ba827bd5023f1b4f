"""`python -m cxr_ldm.demo.pretrain`: the demo's tiny "pretrained" pipeline; the same as
`python -m cxr_ldm.experiments.tiny_pretrained` (see there: two `fit` configs, configs/pretrain/)."""

from __future__ import annotations

from cxr_ldm.experiments.tiny_pretrained import build_tiny_pretrained
from cxr_ldm.experiments.tiny_pretrained import main as _main

build_pretrained = build_tiny_pretrained  # the demo's name for it


def main(argv: list[str] | None = None) -> int:
    return _main(argv, prog="python -m cxr_ldm.demo.pretrain")


if __name__ == "__main__":
    raise SystemExit(main())
