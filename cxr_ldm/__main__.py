"""Entry point: `python -m cxr_ldm <command>`.

Lightning's own subcommands (fit, validate, test, predict) go to the LightningCLI; every other command is
one module of `cxr_ldm.commands.COMMANDS`, with `DESCRIPTION` and `main(argv) -> int`.

A user error (`cxr_ldm.errors.ConfigError` and the errors derived from it, anywhere in an exception's chain)
is printed as one line and exits with status 2; `--debug` (before the command) or CXR_LDM_DEBUG=1 shows the
traceback instead.
"""

from __future__ import annotations

import os
import sys

from cxr_ldm.commands import COMMANDS

# Lightning's own subcommands, run by cxr_ldm.cli (imported when one runs: it loads Lightning)
LIGHTNING_COMMANDS = {
    "fit": "train a model (LightningCLI)",
    "validate": "run the validation loop once (LightningCLI)",
    "test": "run the test loop once (LightningCLI)",
    "predict": "run the predict loop (LightningCLI)",
}


def _usage() -> str:
    lines = ["usage: python -m cxr_ldm <command> [options]", "", "commands:"]
    for name, text in LIGHTNING_COMMANDS.items():
        lines.append(f"  {name:<10} {text}")
    for name, module in COMMANDS.items():
        lines.append(f"  {name:<10} {module.DESCRIPTION}")
    lines += [
        "",
        "`python -m cxr_ldm <command> --help` describes each command's options.",
        "`python -m cxr_ldm --debug <command> ...` (or CXR_LDM_DEBUG=1) shows tracebacks of user errors.",
    ]
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


def debug_enabled() -> bool:
    """True when user errors should show their traceback (CXR_LDM_DEBUG=1, set by `--debug` too)."""
    return os.environ.get("CXR_LDM_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _run(command: str, rest: list[str]) -> int:
    if command in LIGHTNING_COMMANDS:
        from cxr_ldm import cli

        return cli.main([command, *rest])
    return int(COMMANDS[command].main(rest) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--debug":
        os.environ["CXR_LDM_DEBUG"] = "1"
        argv = argv[1:]
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in LIGHTNING_COMMANDS and command not in COMMANDS:
        print(f"cxr_ldm: unknown command '{command}'\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        return _run(command, rest)
    except Exception as error:  # a user error may arrive wrapped by the argument parser or by Lightning
        cause = _config_error_in(error)
        if cause is None or debug_enabled():
            raise
        print(f"cxr_ldm {command}: error: {cause}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
