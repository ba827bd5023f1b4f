"""Export to a diffusers directory that plain diffusers loads and samples from, with identical weights."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from _tiny_run import ROOT
from safetensors.torch import load_file

from cxr_ldm.__main__ import main
from cxr_ldm.models import LatentDiffusion

PLAIN_DIFFUSERS = """
import sys, json, torch
from diffusers import StableDiffusionPipeline
assert "cxr_ldm" not in sys.modules
reports = {}
for folder in sys.argv[1:]:
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    out = pipe("pleural effusion", num_inference_steps=3, guidance_scale=4.0, output_type="np",
               generator=torch.Generator().manual_seed(0))
    reports[folder] = {"shape": list(out.images.shape), "scheduler": type(pipe.scheduler).__name__,
                       "modules": sorted(m for m in ("cxr_ldm",) if m in sys.modules)}
print(json.dumps(reports))
"""

FLAGS = {"no-ema": ["--no-ema"], "ema": ["--ema"], "default": []}


@pytest.fixture(scope="module")
def checkpoint(tiny_fit):
    return tiny_fit / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoint):
    """The checkpoint exported with each of FLAGS, then every export loaded and sampled in one plain-diffusers
    process: {name: (folder, that process's report on it)}."""
    base = tmp_path_factory.mktemp("export")
    for name, flag in FLAGS.items():
        assert main(["export", "--ckpt", str(checkpoint), "--out", str(base / name), *flag]) == 0
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_DIFFUSERS, *(str(base / name) for name in FLAGS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout.strip().splitlines()[-1])
    return {name: (base / name, reports[str(base / name)]) for name in FLAGS}


@pytest.mark.parametrize("flag", list(FLAGS))
def test_export_loads_in_plain_diffusers(exported, checkpoint, flag):
    """EMA weights unless --no-ema: the default matches sampling, validation and `generate`."""
    ema = flag != "no-ema"
    out, report = exported[flag]
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert report == {"shape": [1, 32, 32, 3], "scheduler": "PNDMScheduler", "modules": []}

    model = LatentDiffusion.load_from_checkpoint(checkpoint, map_location="cpu")
    exported_unet = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    expected = (
        model.ema.named_shadows() if ema else {f"unet.{k}": v for k, v in model.unet.state_dict().items()}
    )
    for name, tensor in exported_unet.items():
        assert torch.equal(tensor, expected[f"unet.{name}"].to(tensor.dtype)), name
    if ema:  # EMA and raw weights really differ after training, so the choice matters
        raw = model.unet.state_dict()
        assert any(not torch.equal(exported_unet[k], raw[k]) for k in exported_unet)
    text = load_file(out / "text_encoder" / "model.safetensors")
    assert all(torch.equal(v, model.text.encoder.state_dict()[k]) for k, v in text.items())


def test_export_without_ema_weights_is_refused(tmp_path, checkpoint, capsys):
    model = LatentDiffusion.load_from_checkpoint(checkpoint, map_location="cpu")
    model.ema = None
    from cxr_ldm.generation.export import export_pipeline

    with pytest.raises(ValueError, match="without EMA"):
        export_pipeline(model, tmp_path / "x", ema=True)
    assert (
        export_pipeline(model, tmp_path / "raw") / "unet"
    ).is_dir()  # no EMA: the default is the raw weights


def _projected_domain_encoder() -> dict:
    """The MiniLM encoder (384 wide) through a linear projection into a 32-wide cross-attention."""
    from _tiny_run import domain_encoder_init_args

    args = domain_encoder_init_args(conditioning={"max_prompt_tokens": 16, "text_projection": "linear"})
    args["components"]["unet_config"] = {**args["components"]["unet_config"], "cross_attention_dim": 32}
    return args


@pytest.mark.parametrize("text", ["clip-16-tokens", "domain-encoder-projection"])
def test_a_folder_with_a_custom_text_side_generates_as_the_model_does(tmp_path, text):
    """`generate` / `evaluate --model <exported folder>` encode prompts as the model was trained to (prompt
    length, padding mask, projection; text_conditioning.json), not as the plain pipeline would."""
    from _tiny_run import tiny_init_args

    from cxr_ldm.generation.export import CONDITIONING_FILE, export_pipeline
    from cxr_ldm.generation.image_source import CheckpointSource, load_image_source

    torch.manual_seed(0)
    args = (
        tiny_init_args(conditioning={"max_prompt_tokens": 16})
        if text == "clip-16-tokens"
        else _projected_domain_encoder()
    )
    model = LatentDiffusion(**args).eval()
    out = export_pipeline(model, tmp_path / "exported")
    assert (out / CONDITIONING_FILE).is_file()
    prompts, seeds = ["normal", "pleural effusion"], [0, 1]
    expected = CheckpointSource(model).sample(prompts, seeds, num_inference_steps=2)
    assert torch.allclose(
        load_image_source(out).sample(prompts, seeds, num_inference_steps=2), expected, atol=1e-5
    )


def test_an_export_over_an_earlier_one_leaves_nothing_of_its_text_side(tmp_path, checkpoint, capsys):
    """An earlier export's text_conditioning.json and README stayed beside a new export at the same path, and
    the folder then generated with the old prompt length. Files of the user's own added to an export stay; the
    folder may be reached through a link; a file is no folder."""
    from _tiny_run import tiny_init_args

    from cxr_ldm.generation.export import CONDITIONING_FILE, export_pipeline
    from cxr_ldm.generation.image_source import CheckpointSource, load_image_source

    torch.manual_seed(0)
    disk = tmp_path / "disk"
    disk.mkdir()
    out = tmp_path / "e"
    out.symlink_to(disk, target_is_directory=True)
    export_pipeline(LatentDiffusion(**tiny_init_args(conditioning={"max_prompt_tokens": 16})), out)
    assert (disk / CONDITIONING_FILE).is_file() and (disk / "README.md").is_file()
    (disk / "NOTES.md").write_text("mine")
    plain = LatentDiffusion(**tiny_init_args()).eval()
    export_pipeline(plain, out)
    assert not (disk / CONDITIONING_FILE).exists() and not (disk / "README.md").exists()
    assert (disk / "NOTES.md").read_text() == "mine" and out.is_symlink()
    expected = CheckpointSource(plain).sample(["normal"], [0], num_inference_steps=2)
    assert torch.allclose(
        load_image_source(out).sample(["normal"], [0], num_inference_steps=2), expected, atol=1e-5
    )

    (tmp_path / "afile.txt").write_text("x")
    assert main(["export", "--ckpt", str(checkpoint), "--out", str(tmp_path / "afile.txt")]) == 2
    assert "afile.txt is a file; give a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(tmp_path), "--out", str(tmp_path / "y")])
    assert "is a folder; give the .ckpt file" in capsys.readouterr().err


def test_a_damaged_exported_folder_is_refused_in_one_line(tmp_path):
    """A text_conditioning.json cut short (JSONDecodeError) and a folder without its U-Net weights (a diffusers
    OSError) were tracebacks of `generate --model DIR`."""
    import shutil

    from _tiny_run import tiny_init_args

    from cxr_ldm.errors import ConfigError
    from cxr_ldm.generation.export import CONDITIONING_FILE, export_pipeline
    from cxr_ldm.generation.image_source import load_image_source

    out = export_pipeline(
        LatentDiffusion(**tiny_init_args(conditioning={"max_prompt_tokens": 16})), tmp_path / "e"
    )
    cut, unweighted = shutil.copytree(out, tmp_path / "cut"), shutil.copytree(out, tmp_path / "unweighted")
    (cut / CONDITIONING_FILE).write_text('{"max_length": 1')
    with pytest.raises(ConfigError, match=r"text_conditioning\.json is damaged .*export the model again"):
        load_image_source(cut)
    (unweighted / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(
        ConfigError, match=r"unweighted: the pipeline could not be loaded .*export the model again"
    ):
        load_image_source(unweighted)


def test_an_exported_folder_samples_as_its_checkpoint_with_every_sampler(tmp_path):
    """The folder's scheduler config is PNDM's: every other sampler built from it (DDIM's last step
    included) is the one the checkpoint samples with."""
    from _tiny_run import tiny_init_args

    from cxr_ldm.generation.export import export_pipeline
    from cxr_ldm.generation.image_source import CheckpointSource, load_image_source
    from cxr_ldm.models.samplers import SAMPLERS

    torch.manual_seed(0)
    model = LatentDiffusion(**tiny_init_args()).eval()
    exported = load_image_source(export_pipeline(model, tmp_path / "exported"))
    for name in SAMPLERS:
        expected = CheckpointSource(model).sample(["normal"], [0], num_inference_steps=3, scheduler=name)
        got = exported.sample(["normal"], [0], num_inference_steps=3, scheduler=name)
        assert torch.allclose(got, expected, atol=1e-5), name


def _lightning_checkpoint(model, path):
    from lightning.pytorch import Trainer

    trainer = Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


def test_pretrained_names_where_a_vae_checkpoints_pipeline_moved_or_is_refused(tmp_path, capsys):
    """--pretrained was read for LatentDiffusion checkpoints alone: a VAE checkpoint whose pipeline had moved
    could not be exported, and the option was passed over in silence for VAE and text projection checkpoints."""
    import shutil

    from diffusers import AutoencoderKL

    from cxr_ldm.models import Autoencoder

    original = shutil.copytree(ROOT / "artifacts" / "tiny-pretrained", tmp_path / "pipeline")
    model = Autoencoder(pretrained_model_name_or_path=str(original))
    with torch.no_grad():
        model.vae.decoder.conv_out.bias.add_(0.5)  # a trained weight, not the pipeline's
    ckpt = _lightning_checkpoint(model, tmp_path / "vae.ckpt")
    moved = original.rename(tmp_path / "moved")
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "lost")]) == 2
    assert "pipeline" in capsys.readouterr().err
    assert (
        main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "vae"), "--pretrained", str(moved)]) == 0
    )
    exported = AutoencoderKL.from_pretrained(tmp_path / "vae").state_dict()
    assert all(torch.equal(exported[k], v) for k, v in model.vae.state_dict().items())

    built = _lightning_checkpoint(Autoencoder(vae_config=dict(model.vae.config)), tmp_path / "built.ckpt")
    assert (
        main(["export", "--ckpt", str(built), "--out", str(tmp_path / "b"), "--pretrained", str(moved)]) == 2
    )
    assert (
        "built from model.init_args.vae_config, not from a pipeline: drop --pretrained"
        in capsys.readouterr().err
    )

    projection = tmp_path / "projection.ckpt"
    torch.save({"state_dict": {"projection.net.weight": torch.zeros(2, 2)}, "pytorch-lightning_version": "2"},
               projection)  # fmt: skip
    assert (
        main(["export", "--ckpt", str(projection), "--out", str(tmp_path / "p"), "--pretrained", str(moved)])
        == 2
    )
    assert "is a text projection checkpoint, which names its text encoders itself" in capsys.readouterr().err


def test_pretrained_beside_a_pipeline_folder_is_refused(tmp_path, capsys):
    """A pipeline folder holds every part: --pretrained beside it was passed over in silence."""
    args = [
        "generate",
        "--model",
        str(ROOT / "artifacts" / "tiny-pretrained"),
        "--prompts",
        str(tmp_path / "p.txt"),
    ]
    (tmp_path / "p.txt").write_text("pleural effusion\n")
    assert main([*args, "--out", str(tmp_path / "out"), "--pretrained", str(tmp_path)]) == 2
    assert "is a pipeline folder, which holds every part itself" in capsys.readouterr().err
