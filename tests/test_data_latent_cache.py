"""The latent cache: encoded once with the frozen VAE, read back exactly, and training never runs the encoder."""

from __future__ import annotations

import pytest
import torch
import yaml
from _tiny_run import TINY, fit_args
from diffusers import AutoencoderKL

from cxr_ldm.__main__ import main
from cxr_ldm.data import MimicCxrDataModule
from cxr_ldm.generation.sampling import build_pipeline
from cxr_ldm.models import LatentDiffusion


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    init_args = yaml.safe_load(TINY.read_text())["model"]["init_args"]
    init_args.pop("trainable")
    torch.manual_seed(0)
    model = LatentDiffusion(**init_args)
    folder = tmp_path_factory.mktemp("tiny-pipeline")
    build_pipeline(model).save_pretrained(folder)
    return folder


def _data(phantom_root, cache_dir, vae):
    return MimicCxrDataModule(
        root=str(phantom_root),
        image_size=32,
        batch_size=4,
        num_workers=0,
        no_finding_cap=None,
        cache_dir=str(cache_dir),
        latent_cache_vae=str(vae) if vae else None,
    )


def test_cached_latents_match_the_vae(tmp_path, phantom_root, tiny_pipeline):
    cached = _data(phantom_root, tmp_path, tiny_pipeline)
    cached.prepare_data()
    cached.setup("fit")
    plain = _data(phantom_root, tmp_path, None)
    plain.setup("fit")
    vae = AutoencoderKL.from_pretrained(tiny_pipeline, subfolder="vae").eval()
    for index in (0, 5):
        item = cached.datasets["train"][index]
        assert "pixel_values" not in item and item["latent_parameters"].shape == (8, 16, 16)
        pixels = plain.datasets["train"][index]["pixel_values"][None]
        with torch.no_grad():
            expected = vae.encode(pixels).latent_dist.parameters[0]
        assert torch.allclose(item["latent_parameters"], expected, atol=2e-2, rtol=1e-2)
        assert item["prompt"] == plain.datasets["train"][index]["prompt"]


def test_cache_key_follows_the_vae(tmp_path, phantom_root, tiny_pipeline):
    first = _data(phantom_root, tmp_path, tiny_pipeline).latent_cache_folder()
    other = tmp_path / "other-vae"
    AutoencoderKL.from_pretrained(tiny_pipeline, subfolder="vae").save_pretrained(other)
    assert _data(phantom_root, tmp_path, other).latent_cache_folder() != first


def test_fit_from_the_latent_cache_never_runs_the_encoder(tmp_path, phantom_root, tiny_pipeline, monkeypatch):
    data = _data(phantom_root, tmp_path / "cache", tiny_pipeline)
    data.prepare_data()  # built once, before training

    def no_encoder(*args, **kwargs):
        raise AssertionError("the VAE encoder ran although the latent cache was on")

    monkeypatch.setattr(AutoencoderKL, "encode", no_encoder)
    args = fit_args(
        tmp_path,
        phantom_root,
        "--model.init_args.components.pretrained_model_name_or_path",
        str(tiny_pipeline),
        "--model.init_args.components.vae_config",
        "null",
        "--model.init_args.components.unet_config",
        "null",
        "--model.init_args.components.text_encoder_config",
        "null",
        "--model.init_args.components.tokenizer_name_or_path",
        "null",
        "--data.init_args.latent_cache_vae",
        str(tiny_pipeline),
        "--trainer.max_steps",
        "2",
    )
    assert main(args) == 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
