"""One unit as a submitit job: the experiment config and follow-ups travel pickled with it, the job runs the
unit (experiments/engine.py `run_unit`) and records when it started and finished (experiments/unit_records.py).

Preemption and time limits: submitit signals the job before it is stopped and calls `checkpoint`, which
gives back the same call; submitit requeues it, and the unit resumes (a fit from its last checkpoint through
`ckpt_path="auto"`, a finished fit or evaluation is reused). A job requeued by the cluster itself (`scontrol
requeue`, a preempting partition) runs the same call again and resumes the same way."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from submitit.helpers import Checkpointable

from cxr_ldm.experiments.cluster_fit import is_first_task
from cxr_ldm.experiments.followup import Followup
from cxr_ldm.experiments.spec import ExperimentConfig
from cxr_ldm.experiments.unit_inputs import UnitInputs
from cxr_ldm.experiments.unit_records import DONE, record_start, unit_folder, unit_key, write_record


class UnitJob(Checkpointable):
    """`UnitJob(config, followups, name)()` runs the unit `name` and returns the labels it computed."""

    def __init__(self, config: ExperimentConfig, followups: Sequence[Followup], name: str) -> None:
        self.config, self.followups, self.name = config, tuple(followups), name

    def __call__(self) -> list[str]:
        from cxr_ldm.experiments.engine import run_unit

        key = unit_key(self.config, self.followups, self.name, UnitInputs(self.config).unit_files(self.name))
        folder = unit_folder(self.config, self.name)
        started = time.time()
        if is_first_task():  # attempt 2, 3...: the same job requeued (preempted, timed out)
            started = record_start(folder, key, host=os.uname().nodename, pid=os.getpid())["time"]
        outcome = run_unit(self.config, self.followups, self.name)
        if is_first_task():
            write_record(folder, DONE, {"key": key, "time": time.time(), "seconds": time.time() - started})
        return outcome.computed


__all__ = ["UnitJob"]
