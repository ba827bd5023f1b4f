"""Train the CXR classifier with a fixed budget.

Every arm gets exactly `steps` optimizer steps of `batch_size` images, drawn with replacement, so a
bigger training set buys variety, never extra compute.
"""

from __future__ import annotations

import warnings

import torch
from lightning import Trainer, seed_everything
from torch.utils.data import DataLoader, RandomSampler

from cxr_ldm.data.image_set import ImageSet, ImageSetDataset
from cxr_ldm.evaluation.evaluators.cxr_classifier import CxrClassifier

# also under this module's name, where a config pickled before evaluation/specs.py looks for ClassifierSettings
from cxr_ldm.evaluation.specs import ClassifierSettings
from cxr_ldm.slurm_requeue import trainer_plugins


def build_classifier(settings: ClassifierSettings) -> CxrClassifier:
    return CxrClassifier(
        findings=list(settings.findings),
        image_size=settings.image_size,
        growth_rate=settings.growth_rate,
        block_config=tuple(settings.block_config),
        num_init_features=settings.num_init_features,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
    )


def train_classifier(train: ImageSet, settings: ClassifierSettings, seed: int) -> CxrClassifier:
    """A fresh classifier trained for exactly `settings.steps` steps on `train`."""
    seed_everything(seed, workers=True, verbose=False)
    model = build_classifier(settings)
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(
        ImageSetDataset(train),
        replacement=True,
        num_samples=settings.steps * settings.batch_size,
        generator=generator,
    )
    loader = DataLoader(
        ImageSetDataset(train), batch_size=settings.batch_size, sampler=sampler, drop_last=True
    )
    trainer = Trainer(
        max_steps=settings.steps,
        max_epochs=1,
        accelerator=settings.accelerator,
        devices=1,
        precision=settings.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        plugins=trainer_plugins(),  # in a SLURM job, submitit alone requeues
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        trainer.fit(model, train_dataloaders=loader)
    return model.cpu().eval()
