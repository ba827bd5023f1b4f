"""The commands beside Lightning's: one module each, with `DESCRIPTION` and `main(argv) -> int` (and
`argument_types`, the number types their options share)."""

from cxr_ldm.commands import (
    augment,
    evaluate,
    experiment,
    export,
    generate,
    phantom,
    prepare,
    text_similarity,
)

# name -> module, in the order `python -m cxr_ldm --help` lists them
COMMANDS = {
    "phantom": phantom,
    "prepare": prepare,
    "generate": generate,
    "evaluate": evaluate,
    "export": export,
    "augment": augment,
    "experiment": experiment,
    "text-similarity": text_similarity,
}

__all__ = ["COMMANDS"]
