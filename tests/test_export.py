"""Export to a diffusers directory that plain diffusers loads and samples from, with identical weights."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from _tiny_run import ROOT, run_fit
from safetensors.torch import load_file

from cxr_ldm.__main__ import main
from cxr_ldm.models import LatentDiffusion

PLAIN_DIFFUSERS = """
import sys, json, torch
from diffusers import StableDiffusionPipeline
assert "cxr_ldm" not in sys.modules
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1])
out = pipe("pleural effusion", num_inference_steps=3, guidance_scale=4.0, output_type="np",
           generator=torch.Generator().manual_seed(0))
print(json.dumps({"shape": list(out.images.shape), "scheduler": type(pipe.scheduler).__name__,
                  "modules": sorted(m for m in ("cxr_ldm",) if m in sys.modules)}))
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, phantom_root):
    run = tmp_path_factory.mktemp("run")
    return run_fit(run, phantom_root, "--trainer.max_steps", "2") / "last.ckpt"


@pytest.mark.parametrize("flag", ["--no-ema", "--ema", None])
def test_export_loads_in_plain_diffusers(tmp_path, checkpoint, flag):
    """EMA weights unless --no-ema: the default matches sampling, validation and `generate`."""
    ema = flag != "--no-ema"
    out = tmp_path / "pipeline"
    assert main(["export", "--ckpt", str(checkpoint), "--out", str(out), *([flag] if flag else [])]) == 0
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_DIFFUSERS, str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"shape": [1, 32, 32, 3], "scheduler": "PNDMScheduler", "modules": []}

    model = LatentDiffusion.load_from_checkpoint(checkpoint, map_location="cpu")
    exported = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    expected = (
        model.ema.named_shadows() if ema else {f"unet.{k}": v for k, v in model.unet.state_dict().items()}
    )
    for name, tensor in exported.items():
        assert torch.equal(tensor, expected[f"unet.{name}"].to(tensor.dtype)), name
    if ema:  # EMA and raw weights really differ after training, so the choice matters
        raw = model.unet.state_dict()
        assert any(not torch.equal(exported[k], raw[k]) for k in exported)
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
