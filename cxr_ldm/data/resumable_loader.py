"""The training DataLoader that resumes mid-epoch at the batch where the checkpoint was written.

Lightning saves the `state_dict()` of a training DataLoader that has one in every checkpoint and hands it
back to `load_state_dict()` on resume, before the epoch's iterator is made. The state is (epoch, batches of
that epoch already trained); a resumed run sets its sampler to that epoch and starts the epoch that many
batches in, skipping their indices without reading a file, so it sees exactly the batches the uninterrupted
run would have seen next. The order itself is a function of (seed, epoch): Lightning's `DistributedSampler`
under DDP, `EpochShuffle` in one process.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator

import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader, RandomSampler

# () -> (epoch, batches of that epoch trained so far; 0 once the epoch is complete)
Position = Callable[[], tuple[int, int]]


class EpochShuffle(RandomSampler):
    """Every item once per epoch, in the order `torch.randperm(n)` draws from seed + epoch: the order
    Lightning's `DistributedSampler` gives one rank of one, and the same after a resume. Under DDP Lightning
    replaces it (as any `RandomSampler`) by its `DistributedSampler` with the same seed."""

    def __init__(self, data_source, seed: int | None = None) -> None:
        self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        super().__init__(data_source, generator=torch.Generator().manual_seed(self.seed))

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at every epoch start (`_set_sampler_epoch`)."""
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


class _SkipFirst:
    """An index (batch) sampler whose first iteration that is read from starts `skip` batches in; later
    ones start at 0. (A DataLoader iterator may make an iterator it never reads, then another one.)"""

    def __init__(self, batches: Iterable, skip: int) -> None:
        self.batches, self.skip = batches, skip

    def __iter__(self) -> Iterator:
        def batches() -> Iterator:
            skip, self.skip = self.skip, 0  # at the first batch drawn
            yield from itertools.islice(iter(self.batches), skip, None)

        return batches()

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


class ResumableDataLoader(DataLoader):
    """A `DataLoader` whose `state_dict` is where training stands in the epoch (`position`, from the
    trainer), and whose next epoch starts there after `load_state_dict`."""

    def __init__(self, *args, position: Position | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.position = position
        self._resume_at = 0  # batches of the coming epoch already trained
        self._skipping = 0

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.position() if self.position is not None else (0, 0)
        return {"epoch": int(epoch), "batches": int(batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        batches = int(state.get("batches", 0))
        if batches > 0:
            _set_sampler_epoch(self, int(state["epoch"]))
            self._resume_at = batches

    def __iter__(self):
        self._skipping, self._resume_at = self._resume_at, 0
        try:
            return super().__iter__()
        finally:
            self._skipping = 0

    @property
    def _index_sampler(self):
        # the DataLoader's iterator takes its indices from here; during `__iter__` after a resume they
        # start `_skipping` batches in
        sampler = super()._index_sampler
        return _SkipFirst(sampler, self._skipping) if self._skipping else sampler
