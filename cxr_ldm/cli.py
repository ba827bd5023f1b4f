"""`python -m cxr_ldm fit|validate|test|predict`: the command line in front of the project's LightningCLI.

What only a command line needs happens here: a `--config` file that holds no mapping (empty, only comments,
a list) is refused naming the file, a LatentDiffusion config or option from before the model's typed
parts is refused with each old key's new place, and `--model.init_args.PART.FIELD null` is read as YAML's
null. Then `training.run_lightning_cli` parses and runs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from cxr_ldm.errors import ConfigError
from cxr_ldm.models.diffusion_parts import FLAT_ARGUMENTS, PARTS, new_key
from cxr_ldm.training.config_files import file_contents
from cxr_ldm.training.config_yaml import InvalidYaml, check_config_file
from cxr_ldm.training.lightning_cli import run_lightning_cli


def _config_file(args: Sequence[str], index: int) -> str | None:
    """The file `args[index]` gives as a config (`--config FILE`, `-c FILE`, `--config=FILE`), else None (an
    inline YAML config is no file)."""
    arg = args[index]
    path = args[index + 1] if arg in ("--config", "-c") and index + 1 < len(args) else None
    if arg.startswith("--config="):
        path = arg.split("=", 1)[1]
    return path if path is not None and Path(path).is_file() else None


def _model_sections(args: Sequence[str]) -> list[tuple[str, dict]]:
    """(where, `model` mapping) of each `--config` file and `--model...` option in `args`, in order."""
    found: list[tuple[str, dict]] = []
    for index, arg in enumerate(args):
        path = _config_file(args, index)
        if path is not None:
            try:
                model = file_contents(path).get("model")
            except InvalidYaml:
                raise  # jsonargparse's message names no file
            except ConfigError:
                continue  # jsonargparse reports it in its own words
            if isinstance(model, dict):
                found.append((path, model))
        elif arg.startswith("--model.init_args."):
            found.append(("the command line", {"init_args": {arg[18:].split("=")[0].split(".")[0]: None}}))
        elif arg in ("--model", "--model.class_path") or arg.startswith(("--model=", "--model.class_path=")):
            value = arg.split("=", 1)[1] if "=" in arg else (args[index + 1] if index + 1 < len(args) else "")
            found.append(("the command line", {"class_path": value}))
    return found


def refuse_flat_model_keys(args: Sequence[str]) -> None:
    """A LatentDiffusion config from before the model's typed parts (`model.init_args.snr_gamma`, ...) is
    refused with each old key's new place, instead of jsonargparse's bare "not accepted"."""
    sections = _model_sections(args)
    class_paths = [model["class_path"] for _, model in sections if model.get("class_path")]
    if not class_paths or not str(class_paths[-1]).endswith("LatentDiffusion"):
        return
    old = [
        f"{where}: model.init_args.{key} -> {new_key(key)}"
        for where, model in sections
        for key in (model.get("init_args") or {})
        if key in FLAT_ARGUMENTS
    ]
    if old:
        raise ConfigError(
            "LatentDiffusion's arguments are grouped in typed parts (components, objective, conditioning, ema, "
            "optimization, speed); rename these keys (docs/variants.md lists every part):\n  "
            + "\n  ".join(old)
        )


def part_nulls_as_mappings(args: Sequence[str]) -> list[str]:
    """`--model.init_args.PART.FIELD null` as `--model.init_args.PART {"FIELD": null}`.

    jsonargparse reads a command-line null for a field of a dataclass inside a subclass's init_args as the
    string "None" (or refuses it); the mapping form sets the same field and keeps the part's other fields.
    Only a part's own fields are rewritten; a null deeper inside one (a field of
    `conditioning.textual_inversion`) is set in a config file, where YAML's null is read right.
    """
    out: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        key, joined, value = arg.partition("=")
        if not joined and index + 1 < len(args):
            value = args[index + 1]
        names = key.removeprefix("--model.init_args.").split(".")
        if key.startswith("--model.init_args.") and len(names) == 2 and names[0] in PARTS and value in _NULLS:
            out.append(f"--model.init_args.{names[0]}={json.dumps({names[1]: None})}")
            index += 1 if joined else 2
            continue
        out.append(arg)
        index += 1
    return out


_NULLS = {"null", "None", "~", "Null", "NULL"}


def command_line(args: Sequence[str]) -> list[str]:
    """A command line as the LightningCLI should read it: a config file that holds no mapping refused by name,
    old LatentDiffusion keys refused by name, a part field's null read as YAML's null."""
    args = [str(arg) for arg in args]
    for index in range(len(args)):
        path = _config_file(args, index)
        if path is not None:
            check_config_file(path)  # jsonargparse's "Unexpected config" names neither the file nor the fix
    refuse_flat_model_keys(args)
    return part_nulls_as_mappings(args)


def main(args: Sequence[str]) -> int:
    """Run one Lightning subcommand line (`["fit", "--config", "a.yaml", ...]`)."""
    run_lightning_cli(command_line(args))
    return 0
