"""The evaluation protocol of one model: finding probes, one image per real test prompt, CXR FID / KID at two
guidances, MS-SSIM diversity and text-to-image retrieval, every image drawn with the same seeds for every
model. The images stay on disk (resumable image by image); the result is a nested dict of metrics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.evaluation.diversity import ms_ssim_diversity
from cxr_ldm.evaluation.metric_names import MS_SSIM
from cxr_ldm.evaluation.text_retrieval import t2i_recall_at_k
from cxr_ldm.experiments.real_references import References, distances
from cxr_ldm.experiments.spec import ProtocolSpec
from cxr_ldm.experiments.synthetic_augmentation.classifier_arm import classify_image_set
from cxr_ldm.experiments.synthetic_augmentation.synthetic import prompt_records
from cxr_ldm.generation.finding_prompts import finding_prompts
from cxr_ldm.generation.generated_folder import GenerationSettings, generate_images, read_generated
from cxr_ldm.generation.prompt_source import PromptRecord
from cxr_ldm.labels import CHEXPERT_LABELS

PROBE_SEED, TEST_SEED, DIVERSITY_SEED = 1000, 2000, 3000


def sample_rows(count: int, limit: int | None, seed: int = 0) -> list[int]:
    """A seeded subset of `limit` rows (all when `limit` is None or larger), in their original order."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted(torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit].tolist())


def probe_records(protocol: ProtocolSpec, references: References, prompts: dict[str, str] | None):
    """One prompt per finding: written as the data module writes prompts, or the arm's own texts."""
    if prompts is None:
        splits = references.splits
        return finding_prompts(protocol.findings, splits.prompt_mode, splits.prompt_template)
    records = []
    for finding in protocol.findings:
        labels = dict.fromkeys(CHEXPERT_LABELS, 0.0)
        labels[finding] = 1.0
        records.append(PromptRecord(prompts[finding], labels))
    return records


def shown_test_set(protocol: ProtocolSpec, references: References) -> ImageSet:
    test = references.splits.test
    return test.take(sample_rows(len(test), protocol.test_prompts))


def t2i_recall(retriever, images: ImageSet) -> dict[str, float]:
    """Does each distinct prompt retrieve an image drawn from it among all generated images?"""
    with torch.no_grad():
        pixels = images.pixels()
        image_embeddings = torch.cat(
            [retriever.encode_images(pixels[i : i + 256]) for i in range(0, len(pixels), 256)]
        )
        queries = list(dict.fromkeys(images.prompts))
        text_embeddings = torch.cat(
            [retriever.encode_texts(queries[i : i + 256]) for i in range(0, len(queries), 256)]
        )
    return t2i_recall_at_k(text_embeddings.cpu(), queries, image_embeddings.cpu(), images.prompts)


def evaluate_model(
    source, out: Path, protocol: ProtocolSpec, references: References, probe_prompts: dict[str, str] | None = None,
    model_id: str | None = None,
) -> dict:  # fmt: skip
    """Every metric of the protocol for the model `source` (anything with `sample(prompts, seeds, ...)`),
    its images under `out` (`probe/`, `test/`, `fidelity/`, `diversity/`)."""
    size = references.splits.test.images.shape[-1]
    settings = GenerationSettings(
        per_prompt=1, num_inference_steps=protocol.sample_steps, guidance_scale=protocol.guidance,
        scheduler=protocol.scheduler, seed=TEST_SEED, batch_size=protocol.batch_size,
    )  # fmt: skip
    evaluator, cuts, test = references.evaluator, references.cuts, references.splits.test
    probes = probe_records(protocol, references, probe_prompts)

    def draw(name: str, records, per_prompt: int, seed: int, guidance: float) -> ImageSet:
        run = replace(settings, per_prompt=per_prompt, seed=seed, guidance_scale=guidance)
        generate_images(source, records, out / name, run, progress=False, model=model_id)
        return read_generated(out / name, per_prompt=per_prompt, image_size=size)

    probe = draw("probe", probes, protocol.probe_images, PROBE_SEED, protocol.guidance)
    shown = shown_test_set(protocol, references)
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
        results["retrieval"] = t2i_recall(references.retriever, fake)
    return results


def flatten(results: dict, prefix: str = "") -> dict[str, float]:
    """`{"probe": {"cond_auroc": 0.9}}` -> `{"probe/cond_auroc": 0.9}` (numbers only)."""
    flat = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat
