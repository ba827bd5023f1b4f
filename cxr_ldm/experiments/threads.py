"""`threads: auto`: torch's CPU threads per unit from the cores a unit has when it runs, resolved once by the
command before any unit key is made.

A unit's thread count changes CPU summation order, so it is one of the unit's inputs (its key, its
`fit_inputs` and `evaluation_inputs`): `auto` is never recorded, the number it resolves to is. A unit is a
deterministic function of that number: the same resolved value gives the same model and metrics, another
value another (equally valid) draw of the float rounding. Resolution:

- in this process (`launcher.kind: in_process`, the units one after another): every core this process may
  run on (`os.sched_getaffinity`);
- submitit's local executor (`array_parallelism` units at once on this machine): those cores divided by
  `array_parallelism` (at least 1);
- SLURM: `launcher.cpus_per_task` (each job's own cores); refused without it, since the driver cannot know
  the cores of a node it does not run on.

So the same experiment resolves to other numbers under other launchers or on machines with other core
counts, and its units are then other units (computed anew, not mixed with the old ones). Give a number to
keep results identical across launchers and machines.
"""

from __future__ import annotations

import os

from cxr_ldm.errors import ConfigError

AUTO = "auto"


def available_cores() -> int:
    """The cores this process may run on (its affinity mask; all of the machine's where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | str, launcher=None) -> int:
    """The thread count `threads` stands for: itself when a number, the module docstring's rule for
    `auto` under `launcher` (a LauncherSpec; None: this process)."""
    if threads != AUTO:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ConfigError(f"threads must be a whole number of at least 1 or 'auto', got {threads!r}")
        return threads
    if launcher is None or launcher.kind != "submitit":
        return available_cores()
    if launcher.cluster == "local":
        return max(1, available_cores() // launcher.array_parallelism)
    if launcher.cpus_per_task is None:
        raise ConfigError(
            "threads: auto with launcher.cluster slurm needs launcher.cpus_per_task (each job's cores); "
            "set it, or give threads a number"
        )
    return launcher.cpus_per_task


__all__ = ["AUTO", "available_cores", "resolve_threads"]
