"""Callbacks for DDP tests: what each rank ran and how it ended, a bad batch on one rank only, and the
trained parameters a step left without a gradient."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lightning import Callback


class RankLossProbe(Callback):
    """Each rank writes the images, prompts and loss of every training batch it ran."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.out_dir.mkdir(parents=True, exist_ok=True)
        row = {"step": trainer.global_step, "epoch": trainer.current_epoch, "prompts": list(batch["prompt"]),
               "images": list(batch["dicom_id"]), "loss": float(loss)}  # fmt: skip
        with open(self.out_dir / f"rank{trainer.global_rank}.jsonl", "a") as stream:
            stream.write(json.dumps(row) + "\n")


class RankOutcome(Callback):
    """Each rank writes how its fit ended: a hash of its trained weights and its count of skipped steps, or
    the error it raised."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def _write(self, trainer, row: dict) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(row))

    def on_train_end(self, trainer, pl_module) -> None:
        digest = hashlib.sha256()
        for name, param in sorted(pl_module.trained_named_parameters().items()):
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
        skipped = pl_module.nonfinite.steps_skipped
        self._write(trainer, {"weights": digest.hexdigest(), "skipped": skipped, "step": trainer.global_step})

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._write(trainer, {"error": f"{type(exception).__name__}: {exception}"})


class PoisonRankBatch(Callback):
    """Sets the images of one training batch to NaN on one rank only (a bad file only that rank reads)."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank != self.rank or trainer.global_step != self.step:
            return
        for key in ("pixel_values", "latent_parameters"):
            if key in batch:
                batch[key].fill_(float("nan"))


class RankHostMemory(Callback):
    """At the end of training (frozen weights still in the training dtype), each rank writes the bytes of
    its frozen parameters, of float32 host copies of them (tensors outside the model with a frozen
    parameter's shape), and its peak resident memory so far."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer, pl_module) -> None:
        import resource

        frozen = [p for p in pl_module.parameters() if not p.requires_grad]
        row = {
            "frozen_params": sum(p.numel() for p in frozen),
            "frozen_param_bytes": sum(p.nbytes for p in frozen),
            "frozen_dtypes": sorted({str(p.dtype) for p in frozen}),
            "float32_copy_bytes": float32_copy_bytes(pl_module),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(row))


def float32_copy_bytes(module) -> int:
    """Bytes of live float32 CPU tensors outside `module` with the shape of one of its frozen parameters:
    float32 copies of frozen weights, wherever they are kept."""
    import gc

    import torch

    frozen = [p for p in module.parameters() if not p.requires_grad]
    own = {t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers()]}
    shapes = {tuple(p.shape) for p in frozen}
    copies, seen = 0, set()
    for obj in gc.get_objects():
        if not isinstance(obj, torch.Tensor) or obj.device.type != "cpu" or obj.dtype != torch.float32:
            continue
        pointer = obj.untyped_storage().data_ptr()
        if tuple(obj.shape) in shapes and pointer not in own and pointer not in seen:
            seen.add(pointer)
            copies += obj.untyped_storage().nbytes()
    return copies


class UnusedParameters(Callback):
    """After every backward, writes the names of the parameters that require a gradient and got none (one
    JSON list a step): the parameters DDP without find_unused_parameters waits for in vain."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_after_backward(self, trainer, pl_module) -> None:
        unused = [name for name, p in pl_module.named_parameters() if p.requires_grad and p.grad is None]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / f"rank{trainer.global_rank}.jsonl", "a") as stream:
            stream.write(json.dumps({"step": trainer.global_step, "unused": unused}) + "\n")
