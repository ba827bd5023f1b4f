"""Entry point: `python -m cxr_ldm <command>`.

Lightning's own subcommands (fit, validate, test, predict) go to the LightningCLI; every other command is
one module under `cxr_ldm.commands` that exposes `DESCRIPTION` and `main(argv) -> int`.
"""

from __future__ import annotations

import importlib
import sys

LIGHTNING_COMMANDS = {
    "fit": "train a model (LightningCLI)",
    "validate": "run the validation loop once (LightningCLI)",
    "test": "run the test loop once (LightningCLI)",
    "predict": "run the predict loop (LightningCLI)",
}

# name -> module under cxr_ldm.commands; each has DESCRIPTION and main(argv) -> int
TOOL_COMMANDS = {
    "phantom": "phantom",
    "prepare": "prepare",
    "generate": "generate",
    "evaluate": "evaluate",
    "export": "export",
    "augment": "augment",
}


def _load_tool(name: str):
    try:
        return importlib.import_module(f"cxr_ldm.commands.{TOOL_COMMANDS[name]}")
    except ModuleNotFoundError as error:
        if error.name == f"cxr_ldm.commands.{TOOL_COMMANDS[name]}":
            return None
        raise


def _usage() -> str:
    lines = ["usage: python -m cxr_ldm <command> [options]", "", "commands:"]
    for name, text in LIGHTNING_COMMANDS.items():
        lines.append(f"  {name:<10} {text}")
    for name in TOOL_COMMANDS:
        module = _load_tool(name)
        text = module.DESCRIPTION if module is not None else "(not available in this version)"
        lines.append(f"  {name:<10} {text}")
    lines += ["", "`python -m cxr_ldm <command> --help` describes each command's options."]
    return "\n".join(lines)


def _config_error_in(error: BaseException) -> BaseException | None:
    from cxr_ldm.errors import ConfigError

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ConfigError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        from cxr_ldm.cli import run_lightning_cli

        try:
            run_lightning_cli([command, *rest])
        except Exception as error:  # a config mistake may arrive wrapped by the argument parser
            cause = _config_error_in(error)
            if cause is None:
                raise
            print(f"cxr_ldm {command}: error: {cause}", file=sys.stderr)
            return 2
        return 0
    if command in TOOL_COMMANDS:
        module = _load_tool(command)
        if module is None:
            print(f"cxr_ldm: the '{command}' command is not available in this version", file=sys.stderr)
            return 2
        return int(module.main(rest) or 0)
    print(f"cxr_ldm: unknown command '{command}'\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
