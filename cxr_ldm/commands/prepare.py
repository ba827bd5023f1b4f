"""`python -m cxr_ldm prepare`: build the MIMIC-CXR index once and show what every filter kept.

Options are the data module's own (`--data.root`, `--data.views`, ...), from the command line or from
`--config FILE`; the file may be a whole fit config, of which only the `data:` part is read.
"""

from __future__ import annotations

import logging
import sys

import yaml
from jsonargparse import ArgumentParser

from cxr_ldm.errors import ConfigError
from cxr_ldm.labels import CHEXPERT_LABELS
from cxr_ldm.output_folders import check_output_folder

DESCRIPTION = (
    "build the MIMIC-CXR index (views, split, section, length, cap) and report what each filter kept"
)


def build_parser() -> ArgumentParser:
    from cxr_ldm.data.mimic_datamodule import MimicCxrDataModule  # the data stack loads when prepare runs

    parser = ArgumentParser(prog="python -m cxr_ldm prepare", description=DESCRIPTION)
    parser.add_argument(
        "--config",
        type=str | None,
        default=None,
        help="YAML with a data: section (a full fit config works too); several compose in order, as in fit",
    )
    parser.add_argument(
        "--out", type=str, required=True, help="folder for index.csv, summary.json, skipped.csv"
    )
    parser.add_class_arguments(MimicCxrDataModule, "data")
    return parser


def _config_paths(argv: list[str]) -> list[str]:
    """Every `--config` given, in order (`fit` composes them in that order)."""
    paths = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            paths.append(argv[i + 1])
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
    return paths


def data_arguments(config: str | list[str]) -> dict:
    """The MimicCxrDataModule arguments of the configs' `data:` section (full fit configs work too), as
    `fit --config A --config B ...` composes them (their `config:` bases included)."""
    from cxr_ldm.data.mimic_datamodule import MimicCxrDataModule
    from cxr_ldm.training.datamodule import data_section

    class_path, init_args = data_section(config)
    if class_path.rsplit(".", 1)[-1] != MimicCxrDataModule.__name__:
        raise ConfigError(f"the config's data.class_path is {class_path}, not MimicCxrDataModule")
    return init_args


def _bar(count: int, top: int, width: int = 40) -> str:
    return "#" * max(1 if count else 0, round(width * count / top)) if top else ""


def format_summary(summary: dict) -> str:
    """Human-readable version of summary.json."""
    from cxr_ldm.data.mimic_index import SKIPPED_FILE

    lines = ["filters (images kept/in, studies kept/in):"]
    for row in summary["filters"]:
        lines.append(
            f"  {row['step']:<24} images {row['images_kept']:>8}/{row['images_in']:<8} "
            f"(-{row['images_dropped']})  studies {row['studies_kept']:>8}/{row['studies_in']:<8} (-{row['studies_dropped']})"
        )
    totals = summary["totals"]
    lines.append(
        f"kept: {totals['images']} images, {totals['studies']} studies, {totals['subjects']} subjects"
    )
    lines.append(
        "splits: "
        + ", ".join(
            f"{k} {v['images']} images / {v['studies']} studies" for k, v in summary["splits"].items()
        )
    )
    lines.append("views: " + ", ".join(f"{k or '(blank)'} {v}" for k, v in summary["views"].items()))
    lines.append("labels (positive / uncertain / negative / blank, raw values over kept images):")
    for name in CHEXPERT_LABELS:
        c = summary["labels_raw"][name]
        lines.append(
            f"  {name:<28} {c['positive']:>7} {c['uncertain']:>7} {c['negative']:>7} {c['blank']:>7}"
        )
    for key, title in (("prompt_length_chars", "characters"), ("prompt_length_tokens", "tokens")):
        hist = summary.get(key)
        if not hist or not hist["counts"]:
            continue
        lines.append(f"prompt length in {title} (min {hist['min']}, mean {hist['mean']}, max {hist['max']}):")
        top = max(hist["counts"])
        for label, count in zip(hist["bins"], hist["counts"], strict=True):
            lines.append(f"  {label:>9} {count:>8} {_bar(count, top)}")
    skipped = summary["skipped"]
    lines.append(f"skipped bad files: {skipped['count']}")
    for item in skipped["files"][:20]:
        lines.append(f"  {item['path']}: {item['reason']}")
    if skipped["count"] > 20:
        lines.append(f"  ... and {skipped['count'] - 20} more in {SKIPPED_FILE}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from cxr_ldm.data.bad_samples import BadSampleError
    from cxr_ldm.data.mimic_index import INDEX_FILE, SKIPPED_FILE, SUMMARY_FILE
    from cxr_ldm.data.mimic_tables import MimicTableError

    parser = build_parser()
    configs = _config_paths(argv)
    if configs:
        try:
            section = data_arguments(configs)
        except (OSError, ValueError, yaml.YAMLError, ConfigError) as error:
            print(f"prepare: cannot use --config {' '.join(configs)}: {error}", file=sys.stderr)
            return 2
        parser.set_defaults({f"data.{key}": value for key, value in section.items()})
    cfg = parser.parse_args(argv)
    out = check_output_folder(cfg.out, "--out", "index.csv, summary.json and skipped.csv")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
        datamodule = instantiate(cfg).data
        built = datamodule.build_index()
    except (BadSampleError, MimicTableError, ValueError) as error:
        print(f"prepare: {error}", file=sys.stderr)
        return 2
    built.write(out)
    print(format_summary(built.summary))
    print(f"wrote {out / INDEX_FILE}, {out / SUMMARY_FILE}, {out / SKIPPED_FILE}")
    return 0
