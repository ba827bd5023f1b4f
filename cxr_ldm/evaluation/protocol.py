"""The evaluation protocol of one model: finding probes, one image per real test prompt, CXR FID / KID at two
guidances, MS-SSIM diversity and text-to-image retrieval, every image drawn with the same seeds for every
model. The images stay on disk (resumable image by image); the result is a nested dict of metrics."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.ceilings import distances
from cxr_ldm.evaluation.metrics.conditioned_classification import classify_image_set
from cxr_ldm.evaluation.metrics.diversity import ms_ssim_diversity
from cxr_ldm.evaluation.metrics.metric_names import MS_SSIM
from cxr_ldm.evaluation.metrics.text_retrieval import t2i_recall_at_k
from cxr_ldm.evaluation.references import References

# also under this module's name, where a config pickled before evaluation/specs.py looks for ProtocolSpec
from cxr_ldm.evaluation.specs import ProtocolSpec
from cxr_ldm.generation.finding_prompts import finding_prompts
from cxr_ldm.generation.generated_folder import GenerationSettings, generate_images, read_generated
from cxr_ldm.generation.prompt_records import PromptRecord, prompt_records
from cxr_ldm.labels import CHEXPERT_LABELS

PROBE_SEED, TEST_SEED, DIVERSITY_SEED = 1000, 2000, 3000


def sample_rows(count: int, limit: int | None, seed: int = 0) -> list[int]:
    """A seeded subset of `limit` rows (all when `limit` is None or larger), in their original order."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted(torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit].tolist())


@dataclass
class Prompting:
    """How one model is prompted: its finding probes, and the test images it is asked for with the prompt
    its own data module writes for each (`shown`: labels of the real images; `queries`: the reference
    prompts of the same images, what the retriever was trained on, as retrieval queries)."""

    probes: list[PromptRecord]
    shown: ImageSet
    queries: list[str]


def probe_records(findings, options, prompts: dict[str, str] | None) -> list[PromptRecord]:
    """One prompt per finding: the given texts, or written as the data module `options` write prompts."""
    if prompts is None:
        if options.prompt_mode == "report":
            raise ConfigError(
                "an arm trained on report text needs its own probe_prompts (one text per finding, written as "
                "the reports write it); see configs/experiments/_phantom/probes/impression.yaml"
            )
        return finding_prompts(findings, options.prompt_mode, options.prompt_template, options.finding_words)
    records = []
    for finding in findings:
        labels = dict.fromkeys(CHEXPERT_LABELS, 0.0)
        labels[finding] = 1.0
        records.append(PromptRecord(prompts[finding], labels))
    return records


def shown_test_set(protocol: ProtocolSpec, references: References) -> ImageSet:
    """The real test images whose prompts every model is asked for (a seeded subset, or all)."""
    rows = sample_rows(len(references.splits.test), protocol.test_prompts)
    return references.splits.test.take(rows)


def prompting(
    protocol: ProtocolSpec, references: References, datamodule=None, probe_prompts=None
) -> Prompting:
    """How a model trained on `datamodule`'s prompts (default: the experiment's data) is asked for the
    probes and the shown test images. A test image the model's data leaves out (its filters) is left out."""
    options = references.splits.options if datamodule is None else datamodule.options
    probes = probe_records(protocol.findings, options, probe_prompts)
    shown = shown_test_set(protocol, references)
    if datamodule is None:
        return Prompting(probes, shown, list(shown.prompts))
    datamodule.setup()
    test = datamodule.datasets["test"]
    own = dict(zip(test.dicom_ids, test.prompts, strict=True))
    rows = [i for i, image_id in enumerate(shown.ids) if image_id in own]
    if not rows:
        raise ConfigError(
            "no test image of the experiment's data is in the arm's test split: check its data section"
        )
    kept = shown.take(rows)
    queries = list(kept.prompts)
    kept.prompts = [own[image_id] for image_id in kept.ids]
    return Prompting(probes, kept, queries)


def t2i_recall(retriever, images: ImageSet, queries: list[str]) -> dict[str, float]:
    """Does each distinct query (the reference prompt of the image asked for) retrieve an image drawn for it
    among all generated images?"""
    with torch.no_grad():
        pixels = images.pixels()
        image_embeddings = torch.cat(
            [retriever.encode_images(pixels[i : i + 256]) for i in range(0, len(pixels), 256)]
        )
        distinct = list(dict.fromkeys(queries))
        text_embeddings = torch.cat(
            [retriever.encode_texts(distinct[i : i + 256]) for i in range(0, len(distinct), 256)]
        )
    return t2i_recall_at_k(text_embeddings.cpu(), distinct, image_embeddings.cpu(), queries)


def evaluate_model(
    source, out: Path, protocol: ProtocolSpec, references: References, asked: Prompting, model_id: str | None = None
) -> dict:  # fmt: skip
    """Every metric of the protocol for the model `source` (anything with `sample(prompts, seeds, ...)`)
    prompted as `asked` says, its images under `out` (`probe/`, `test/`, `fidelity/`, `diversity/`)."""
    size = references.splits.test.images.shape[-1]
    settings = GenerationSettings(
        per_prompt=1, num_inference_steps=protocol.sample_steps, guidance_scale=protocol.guidance,
        scheduler=protocol.scheduler, seed=TEST_SEED, batch_size=protocol.batch_size,
    )  # fmt: skip
    evaluator, cuts, test = references.evaluator, references.cuts, references.splits.test
    probes, shown = asked.probes, asked.shown

    def draw(name: str, records, per_prompt: int, seed: int, guidance: float) -> ImageSet:
        run = replace(settings, per_prompt=per_prompt, seed=seed, guidance_scale=guidance)
        generate_images(source, records, out / name, run, progress=False, model=model_id)
        return read_generated(out / name, per_prompt=per_prompt, image_size=size)

    probe = draw("probe", probes, protocol.probe_images, PROBE_SEED, protocol.guidance)
    fake = draw("test", prompt_records(shown), 1, TEST_SEED, protocol.guidance)
    results = {
        "probe": classify_image_set(evaluator, probe, cuts),
        "test_prompts": classify_image_set(evaluator, fake, cuts),
        "guidance": protocol.guidance,
        **distances(test, fake, evaluator),
    }
    if protocol.fid_guidance is not None and protocol.fid_guidance != protocol.guidance:
        # Guidance trades fidelity for conditioning: FID is also measured where fidelity is the aim.
        images = draw("fidelity", prompt_records(shown), 1, TEST_SEED, protocol.fid_guidance)
        results["fidelity"] = {"guidance": protocol.fid_guidance, **distances(test, images, evaluator)}
    if protocol.diversity_prompts > 0:
        rows = sample_rows(len(shown), protocol.diversity_prompts, seed=1)
        several = draw("diversity", prompt_records(shown.take(rows)), protocol.diversity_samples, DIVERSITY_SEED,
                       protocol.guidance)  # fmt: skip
        results[MS_SSIM] = ms_ssim_diversity(several.pixels01(), several.prompt_index)
    if references.retriever is not None:
        results["retrieval"] = t2i_recall(references.retriever, fake, asked.queries)
    return results


def judge(
    model: str | Path, out: Path, protocol: ProtocolSpec, references: References, asked: Prompting
) -> dict:
    """`evaluate_model` of the model at `model` (a LatentDiffusion checkpoint or a diffusers pipeline folder),
    its images drawn afresh under `out` (those of an interrupted evaluation are drawn again, same seeds)."""
    from cxr_ldm.generation.image_source import load_image_source

    if out.exists():
        shutil.rmtree(out)
    return evaluate_model(load_image_source(model), out, protocol, references, asked, str(model))
