"""The latent cache: encoded once with the frozen VAE, read back exactly, and training never runs the encoder."""

from __future__ import annotations

import pytest
import torch
import yaml
from _tiny_run import ROOT, TINY, cli_args, fit_args
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
    torch.manual_seed(0)
    state = torch.get_rng_state()
    cached.prepare_data()
    # Building the cache leaves torch's generator as it was (a data loader draws its base seed from it): a fit
    # that encodes the images trains as one that finds them encoded (the end-to-end check is marked slow).
    assert torch.equal(torch.get_rng_state(), state)
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


def _fit_in_own_process(run_dir, phantom_root, cache_dir, pipeline) -> dict:
    """A 3-step tiny fit from the latent cache in a fresh Python process; its last checkpoint's tensors."""
    import os
    import subprocess
    import sys

    args = cli_args(
        [TINY], run_dir, phantom_root, cache_dir,
        "--model.init_args.components.pretrained_model_name_or_path", str(pipeline),
        "--model.init_args.components.vae_config", "null", "--model.init_args.components.unet_config", "null",
        "--model.init_args.components.text_encoder_config", "null",
        "--model.init_args.components.tokenizer_name_or_path", "null",
        "--data.init_args.latent_cache_vae", str(pipeline), "--trainer.max_steps", "3",
        "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "true",
    )  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "cxr_ldm", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (checkpoint,) = (run_dir).rglob("*.ckpt")
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow  # about 40 s on 2 quiet cores: two fits, each in a fresh process
def test_a_fit_that_builds_the_latent_cache_trains_the_model_a_fit_that_finds_it_trains(
    tmp_path, phantom_root, tiny_pipeline
):
    """Building the cache must not move training's random state: the same unit gives the same model whether
    its process encoded the images or found them encoded on disk (and the found cache is used, not rebuilt)."""
    cache = tmp_path / "cache"
    built = _fit_in_own_process(tmp_path / "first", phantom_root, cache, tiny_pipeline)
    (latents,) = cache.rglob("latents.npy")
    stamp = latents.stat().st_mtime_ns, latents.stat().st_ino
    found = _fit_in_own_process(tmp_path / "second", phantom_root, cache, tiny_pipeline)
    assert (latents.stat().st_mtime_ns, latents.stat().st_ino) == stamp  # reused, not encoded again
    assert built.keys() == found.keys()
    differing = [key for key in built if not torch.equal(built[key], found[key])]
    assert differing == []
