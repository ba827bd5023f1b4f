"""`python -m cxr_ldm augment --config configs/augment/<name>.yaml`: the synthetic-data augmentation experiment."""

from __future__ import annotations

import logging
import sys
from dataclasses import fields

DESCRIPTION = "train classifiers on real / synthetic / mixed sets of several sizes (resumable)"


def build_parser():
    """A jsonargparse parser over `AugmentationConfig`: every key typed and validated before anything runs."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from cxr_ldm.experiments.synthetic_augmentation import AugmentationConfig

    parser = ArgumentParser(prog="python -m cxr_ldm augment", description=DESCRIPTION, default_env=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML experiment config (configs/augment/)")
    parser.add_class_arguments(AugmentationConfig, None, fail_untyped=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cxr_ldm.errors import ConfigError
    from cxr_ldm.experiments.synthetic_augmentation import AugmentationConfig, run_experiment

    parser = build_parser()
    cfg = parser.parse_args(sys.argv[1:] if argv is None else argv)
    init = parser.instantiate_classes(cfg)
    config = AugmentationConfig(**{f.name: init[f.name] for f in fields(AugmentationConfig)})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        summary = run_experiment(config)
    except ConfigError as error:
        print(f"cxr_ldm augment: error: {error}", file=sys.stderr)
        return 2
    print(f"{len(summary.computed)} arms computed, {len(summary.reused)} reused from earlier runs")
    for name, path in summary.outputs.items():
        print(f"{name}: {path}")
    print((summary.outputs["table"]).read_text())
    return 0
