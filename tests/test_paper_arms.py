"""The paper's arms at tiny scale (configs/experiments/_phantom/): every composition parses into the model it
describes (built from artifacts/tiny-pretrained) and trains what the arm says; prompts name findings as
`finding_words` say, in training and in the finding probes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from _tiny_run import ROOT

from cxr_ldm.__main__ import _config_error_in
from cxr_ldm.data import MimicCxrDataModule
from cxr_ldm.data.prompts import make_prompt
from cxr_ldm.errors import ConfigError
from cxr_ldm.generation.finding_prompts import finding_prompts
from cxr_ldm.labels import CHEXPERT_LABELS, HEADLINE_FINDINGS
from cxr_ldm.models.text_projection import TextProjection
from cxr_ldm.training.lightning_cli import run_lightning_cli

PHANTOM = ROOT / "configs" / "experiments" / "_phantom"
FINETUNE = ROOT / "configs" / "finetune"
TI_ARM = PHANTOM / "arms" / "textual-inversion.yaml"

# arm -> (paper config, the components that train)
ARMS = {
    "unet-text": ("sd14-unet-text-pa.yaml", {"unet", "text_encoder"}),
    "unet": ("sd14-unet-pa.yaml", {"unet"}),
    "domain-frozen-unet": ("radbert-frozen-unet-pa.yaml", {"unet", "text_projection"}),
    "domain-unet-text": ("sapbert-unet-text-pa.yaml", {"unet", "text_encoder", "text_projection"}),
    "lora": ("lora-unet-pa.yaml", {"unet_lora"}),
    "textual-inversion": ("textual-inversion-pa.yaml", {"token_embeddings"}),
    "textual-projection": ("radbert-textual-projection-pa.yaml", {"text_projection"}),
    "prompt-sentence": ("sd14-unet-text-pa.yaml", {"unet", "text_encoder"}),
    "prompt-impression": ("sd14-unet-text-pa.yaml", {"unet", "text_encoder"}),
}
DOMAIN_ARMS = {"domain-frozen-unet", "domain-unet-text", "textual-projection"}


def build(configs: list[Path], tmp_path: Path, *extra: str):
    """Model, data module and Trainer of a `fit` composition, without running it."""
    args = []
    for config in configs:
        args += ["--config", str(config)]
    args += ["--data.init_args.root", str(tmp_path / "data"), "--data.init_args.cache_dir", str(tmp_path / "cache"),
             "--trainer.default_root_dir", str(tmp_path / "run"), *extra]  # fmt: skip
    return run_lightning_cli(args, run=False)


def test_every_arm_file_has_an_expectation():
    names = {p.stem for p in (PHANTOM / "arms").glob("*.yaml")}
    assert names == {*ARMS, "textual-projection-pretrain"}


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_arm_builds_the_tiny_model_and_trains_what_it_says(arm, tmp_path):
    paper, trained = ARMS[arm]
    extra = []
    if arm == "textual-projection":  # stands in for stage 1's output folder
        TextProjection(384, 32, "mlp", 384).save(tmp_path / "projection")
        extra = ["--model.init_args.conditioning.text_projection_weights", str(tmp_path / "projection")]
    cli = build(
        [FINETUNE / paper, PHANTOM / "finetune.yaml", PHANTOM / "arms" / f"{arm}.yaml"], tmp_path, *extra
    )
    model, data, trainer = cli.model, cli.datamodule, cli.trainer

    # the phantom recipe, whatever the paper config said
    # (kept absolute: the checkpoint loads from any working directory)
    assert model.components_spec.pretrained_model_name_or_path == str(ROOT / "artifacts" / "tiny-pretrained")
    assert model.unet.config.cross_attention_dim == 32
    assert (model.objective.snr_gamma, model.ema_spec.decay, model.speed.gradient_checkpointing) == (
        1.0,
        0.99,
        False,
    )
    assert trainer.accelerator.__class__.__name__ == "CPUAccelerator" and trainer.num_devices == 1
    assert trainer.accumulate_grad_batches == 1 and trainer.precision == "32-true"
    assert (data.image_size, data.batch_size, data.num_workers) == (64, 16, 0)
    assert data.options.views == ["PA", "AP"] and data.options.split == "seeded"
    assert data.latent_cache_vae == "artifacts/tiny-pretrained" and data.options.reports_root is None
    assert {type(c).__name__ for c in trainer.callbacks} >= {
        "RunCheckpoint",
        "ProgressLog",
        "ValidationSamples",
    }

    # trains exactly the arm's parts
    assert set(model.trainable) == trained
    groups = {name.split(".")[0] for name in model.trained_named_parameters()}
    assert groups == trained
    owned = model.owned_parameters()  # a nested part's (LoRA, token rows) parameters count under it
    for name in set(model.components()) - trained:
        assert not any(p.requires_grad for p in owned[name].values()), name

    if arm in DOMAIN_ARMS:  # the real MiniLM encoder, bridged to the U-Net's 32-wide cross-attention
        assert type(model.text.encoder).__name__ == "BertModel"
        assert model.text.encoder.config.hidden_size == 384
        assert model.text.projection[0].in_features == 384 and model.text.projection[-1].out_features == 32
    else:
        assert type(model.text.encoder).__name__ == "CLIPTextModel"


def test_textual_inversion_arm_has_one_token_per_finding(tmp_path):
    cli = build([FINETUNE / "textual-inversion-pa.yaml", PHANTOM / "finetune.yaml", TI_ARM], tmp_path)
    model, data = cli.model, cli.datamodule
    words = data.options.finding_words
    assert sorted(words) == sorted(CHEXPERT_LABELS)
    tokens = model.conditioning.textual_inversion.placeholder_tokens
    assert sorted(tokens) == sorted(words.values())
    tokenizer = model.text.tokenizer
    base_rows = model.text.encoder.get_input_embeddings().base.num_embeddings
    ids = tokenizer.convert_tokens_to_ids(tokens)
    assert sorted(ids) == list(range(base_rows, base_rows + len(tokens)))
    # each token starts from its own finding's words, so the rows differ
    rows = model.text.encoder.get_input_embeddings().new_rows.detach()
    assert len({tuple(row.tolist()) for row in rows}) == len(tokens)

    # a training prompt and the finding probes are written with the tokens, and each token is one id
    labels = np.zeros(len(CHEXPERT_LABELS), dtype=np.float32)
    labels[[CHEXPERT_LABELS.index("Pleural Effusion"), CHEXPERT_LABELS.index("Cardiomegaly")]] = 1.0
    prompt = make_prompt(data.options.prompt_mode, "", labels, finding_words=words)
    assert prompt == "<cardiomegaly>, <pleural-effusion>"
    probes = [
        r.prompt for r in finding_prompts(HEADLINE_FINDINGS, data.options.prompt_mode, finding_words=words)
    ]
    assert probes == ["<cardiomegaly>", "<pleural-effusion>", "<pneumothorax>", "<normal>"]
    encoded = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert [i for i in encoded if i >= base_rows] == tokenizer.convert_tokens_to_ids(
        ["<cardiomegaly>", "<pleural-effusion>"]
    )
    sample_prompts = next(c for c in cli.trainer.callbacks if type(c).__name__ == "ValidationSamples").prompts
    assert set(sample_prompts) <= set(tokens)


def test_textual_projection_pretrain_stage_writes_where_the_arm_reads(tmp_path):
    run = tmp_path / "pretrain"
    cli = build(
        [FINETUNE / "text-projection-pretrain.yaml", PHANTOM / "arms" / "textual-projection-pretrain.yaml"],
        tmp_path,
        "--trainer.default_root_dir",
        str(run),
    )
    model = cli.model
    assert type(model.source.encoder).__name__ == "BertModel"
    assert model.target.encoder.config.hidden_size == 32  # the tiny pipeline's CLIP
    assert (model.projection.kind, model.projection.in_features, model.projection.out_features) == (
        "mlp",
        384,
        32,
    )
    # no output_dir: the fit writes <trainer.default_root_dir>/text_projection
    assert model.hparams.output_dir is None and Path(cli.trainer.default_root_dir) == run
    model.trainer = cli.trainer
    assert model.output_folder() == run / "text_projection"
    arm = yaml.safe_load((PHANTOM / "arms" / "textual-projection.yaml").read_text())
    assert arm["model.init_args.conditioning.text_projection_weights"].endswith("/text_projection")
    assert arm["model.init_args.conditioning.max_prompt_tokens"] == model.hparams.max_prompt_tokens


def test_impression_probes_are_impressions_the_phantom_writes():
    from cxr_ldm.phantom.findings import Finding, StudyFindings
    from cxr_ldm.phantom.reports import _impression, _sentences

    probes = yaml.safe_load((PHANTOM / "probes" / "impression.yaml").read_text())["probe_prompts"]
    assert list(probes) == list(HEADLINE_FINDINGS)
    findings = {
        "Cardiomegaly": Finding("Cardiomegaly", 1.0, size="moderate"),
        "Pleural Effusion": Finding("Pleural Effusion", 1.0, side="right", size="moderate"),
        "Pneumothorax": Finding("Pneumothorax", 1.0, side="left", size="moderate"),
        "No Finding": Finding("No Finding", 1.0),
    }
    for name, probe in probes.items():
        study = StudyFindings([findings[name]])
        written = set()
        for seed in range(40):  # the phantom's impressions of a study with this one finding
            rng = np.random.default_rng(seed)
            _, phrases = _sentences(study, rng)
            written.add(_impression(study, phrases, [], rng))
        assert probe in written, (name, sorted(written))


# ------------------------------------------------------------------ finding_words
WORDS = {"Cardiomegaly": "<cardiomegaly>", "No Finding": "<normal>"}


def _labels(*names: str) -> np.ndarray:
    labels = np.zeros(len(CHEXPERT_LABELS), dtype=np.float32)
    for name in names:
        labels[CHEXPERT_LABELS.index(name)] = 1.0
    return labels


def test_finding_words_rename_findings_in_label_and_template_prompts():
    both = _labels("Cardiomegaly", "Pleural Effusion")
    assert make_prompt("labels", "", both, finding_words=WORDS) == "<cardiomegaly>, pleural effusion"
    assert make_prompt("labels", "", _labels(), finding_words=WORDS) == "<normal>"
    assert make_prompt("labels", "", both) == "cardiomegaly, pleural effusion"
    template = "a photo of a lung x-ray{ with <findings>}"
    assert (
        make_prompt("template", "", both, template=template, finding_words=WORDS)
        == "a photo of a lung x-ray with <cardiomegaly> and pleural effusion"
    )
    assert (
        make_prompt("template", "", _labels(), template=template, finding_words=WORDS)
        == "a photo of a lung x-ray"
    )
    probes = finding_prompts(("Cardiomegaly", "Pneumothorax", "No Finding"), "labels", finding_words=WORDS)
    assert [r.prompt for r in probes] == ["<cardiomegaly>", "pneumothorax", "<normal>"]
    assert probes[0].labels["Cardiomegaly"] == 1.0


def test_finding_words_reach_the_index_prompts(phantom_root, tmp_path):
    def prompts(words):
        data = MimicCxrDataModule(
            str(phantom_root), views=["ALL"], prompt_mode="labels", finding_words=words, split="seeded",
            cache_dir=str(tmp_path), no_finding_cap=None,
        )  # fmt: skip
        return data, data.build_index().frame

    plain_module, plain = prompts(None)
    worded_module, worded = prompts(WORDS)
    assert plain_module.index_folder() != worded_module.index_folder()  # cached indexes do not mix
    cardiac = plain["Cardiomegaly"] == 1.0
    normal = plain["prompt"] == "normal"
    assert cardiac.any() and normal.any()
    assert worded.loc[cardiac, "prompt"].str.contains("<cardiomegaly>", regex=False).all()
    assert not worded["prompt"].str.contains(r"\bcardiomegaly\b(?!>)", regex=True).any()
    assert (worded.loc[normal, "prompt"] == "<normal>").all()


def test_unknown_finding_word_label_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.init_args\.finding_words.*'Cardiomegally'"):
        MimicCxrDataModule(str(tmp_path), prompt_mode="labels", finding_words={"Cardiomegally": "<c>"})
    with pytest.raises(ConfigError, match=r"finding_words.*empty"):
        MimicCxrDataModule(str(tmp_path), prompt_mode="labels", finding_words={"Cardiomegaly": " "})
    with pytest.raises(ConfigError, match=r"finding_words.*prompt_mode"):
        MimicCxrDataModule(str(tmp_path), prompt_mode="report", finding_words=WORDS)
    with pytest.raises(ConfigError, match=r"finding_words.*'Cardiomegally'"):
        finding_prompts(("Cardiomegaly",), "labels", finding_words={"Cardiomegally": "<c>"})
    with pytest.raises(
        Exception
    ) as raised:  # the CLI's parser wraps the error; `python -m cxr_ldm` unwraps it
        build(
            [FINETUNE / "textual-inversion-pa.yaml", PHANTOM / "finetune.yaml", TI_ARM],
            tmp_path,
            "--data.init_args.finding_words",
            '{"Pnemothorax": "<pneumothorax>"}',
        )
    error = _config_error_in(raised.value)
    assert isinstance(error, ConfigError) and "data.init_args.finding_words" in str(error)
    assert "'Pnemothorax'" in str(error)
