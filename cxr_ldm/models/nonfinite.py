"""What a non-finite training loss does (`model.init_args.objective.nonfinite_loss`).

- `raise`: each loss's finiteness is recorded on the device and looked at on the host only now and then
  (at logging steps, epoch and fit ends, before a checkpoint is written), so a training step needs no host
  sync; the error names the first non-finite step and its batch.
- `skip`: the step is skipped (one host sync per step to decide), up to `nonfinite_max_skips` steps.

Under DDP the decision is taken by all ranks together (`across_ranks`): a non-finite loss on any rank makes
every rank skip that step, or every rank raise at the same check, naming the first non-finite step of any
rank. A rank deciding alone would leave the others waiting in the next gradient all-reduce (a hang) or
step without it (replicas that differ).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from cxr_ldm.errors import ConfigError

log = logging.getLogger("cxr_ldm.models")

# (tensor, "max" | "min") -> the tensor reduced over every DDP rank; the tensor itself in one process
Reduce = Callable[[torch.Tensor, str], torch.Tensor]


def _one_process(tensor: torch.Tensor, op: str) -> torch.Tensor:
    return tensor


def describe_batch(batch: dict, batch_idx: int) -> str:
    """The batch index, its keys and its first image ids, for error messages."""
    ids = batch.get("dicom_id")
    return f"batch {batch_idx} (batch keys {sorted(batch)}{f', images {list(ids)[:8]}' if ids is not None else ''})"


class NonfiniteLoss:
    """The non-finite loss policy (`raise` or `skip`) and its state during a fit."""

    def __init__(self, policy: str, max_skips: int) -> None:
        self.policy = policy
        self.max_skips = max_skips
        self._reduce: Reduce = _one_process
        self._device = torch.device("cpu")
        self.reset()

    def across_ranks(self, reduce: Reduce, device: torch.device) -> None:
        """Decide with every rank from now on: `reduce` (Lightning's `strategy.reduce`) over tensors on
        `device` (the strategy's root device, where the collective runs)."""
        self._reduce, self._device = reduce, device

    def reset(self) -> None:
        """A fit's fresh start: nothing skipped, nothing waiting to be checked."""
        self.steps_skipped = 0
        self._drop_gradients = False  # a step all DDP ranks skip: its zero gradients are not applied
        self._unchecked: list[tuple[int, int, str]] = []  # (step, batch, batch description) not yet checked
        self._first_nonfinite: torch.Tensor | None = None  # device index into _unchecked, -1 when none

    def refuse_unsynchronised_skip(self, world_size: int, accumulate: int) -> None:
        """`skip` with gradient accumulation under DDP is refused (a skipped last micro-batch would leave the
        accumulated gradients un-synchronised between the ranks)."""
        if self.policy == "skip" and world_size > 1 and accumulate > 1:
            raise ConfigError(
                "model.init_args.objective.nonfinite_loss: skip with trainer.accumulate_grad_batches: "
                f"{accumulate} under DDP ({world_size} ranks) is refused: a skipped last "
                "micro-batch would leave the accumulated gradients un-synchronised between the ranks. Set "
                "trainer.accumulate_grad_batches: 1 (raise data.init_args.batch_size instead) or use "
                "nonfinite_loss: raise"
            )

    def skipped_step_loss(
        self, world_size: int, trained: dict[str, torch.nn.Parameter]
    ) -> torch.Tensor | None:
        """What a skipped step returns: nothing in one process. Under DDP, where Lightning needs a loss from
        every rank and DDP an all-reduce of every trained parameter's gradient, a zero loss through every
        trained parameter; `drop_skipped_gradients` then drops those zero gradients, so the optimizer moves
        nothing, as in one process."""
        if world_size == 1:
            return None
        self._drop_gradients = True
        return sum(param.sum() for param in trained.values()) * 0.0

    def drop_skipped_gradients(self, optimizer) -> None:
        """Before the optimizer step: a step every rank skipped applies no gradients."""
        if self._drop_gradients:
            self._drop_gradients = False
            optimizer.zero_grad(set_to_none=True)

    def skips(self, loss: torch.Tensor, step: int, batch: dict, batch_idx: int, check_now: bool) -> bool:
        """True when this micro-batch's step is to be skipped (`skip` and a non-finite loss).

        Under `raise` the loss is only recorded, and checked when `check_now` (a logging step, which
        syncs anyway)."""
        if self.policy == "skip":
            # deciding to skip needs the value now: one host sync (and one all-reduce under DDP) per step
            here = (~torch.isfinite(loss.detach())).to(self._device, torch.int32).reshape(1)
            if not int(self._reduce(here.clone(), "max")):
                return False
            self._skip(loss, step, batch, batch_idx, here=bool(here))
            return True
        self.note(loss, step, batch, batch_idx)
        if check_now:
            self.check()
        return False

    def note(self, loss: torch.Tensor, step: int, batch: dict, batch_idx: int) -> None:
        """Record, on the device, whether this loss is finite; look at it on the host only now and then."""
        index = len(self._unchecked)
        self._unchecked.append((step, batch_idx, describe_batch(batch, batch_idx)))
        here = torch.where(torch.isfinite(loss.detach()), -1, index)
        first = self._first_nonfinite
        self._first_nonfinite = here if first is None else torch.where(first >= 0, first, here)

    def check(self) -> None:
        """Raise if a loss since the last check was non-finite, on this rank or any other (one host sync).

        Every rank calls it at the same points (logging steps, epoch and fit ends, checkpoint saves) with
        as many losses noted, so the ranks agree on the first non-finite one."""
        first, unchecked = self._first_nonfinite, self._unchecked
        self._first_nonfinite, self._unchecked = None, []
        none = len(unchecked)  # "no non-finite loss": past every index
        here = torch.full((1,), none, dtype=torch.int64, device=self._device)
        if first is not None:
            first = first.to(self._device).reshape(1)
            here = torch.where(first >= 0, first, here)
        agreed = int(self._reduce(here.clone(), "min"))
        if agreed >= none:
            return
        step, _, where = unchecked[agreed]
        if int(here) != agreed:
            where = f"batch {unchecked[agreed][1]} on another DDP rank"
        raise FloatingPointError(
            f"non-finite loss at global step {step}, {where}. Lower the learning rate, prefer bf16-mixed "
            "over 16-mixed, check the images, or set model.init_args.objective.nonfinite_loss: skip to skip such steps."
        )

    def _skip(self, loss: torch.Tensor, step: int, batch: dict, batch_idx: int, here: bool) -> None:
        if here:
            where = f"non-finite loss ({loss.item()}) at global step {step}, " + describe_batch(
                batch, batch_idx
            )
        else:
            where = f"non-finite loss at global step {step}, batch {batch_idx} on another DDP rank"
        self.steps_skipped += 1
        limit = self.max_skips
        if self.steps_skipped > limit:
            raise FloatingPointError(
                f"{where}: {self.steps_skipped} steps skipped, more than "
                f"model.init_args.objective.nonfinite_max_skips ({limit}); the run has diverged. "
                "Lower the learning rate, prefer bf16-mixed over 16-mixed, or check the images."
            )
        log.warning("skipping step: %s (%d skipped so far)", where, self.steps_skipped)
