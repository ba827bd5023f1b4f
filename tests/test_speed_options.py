"""The speed options at tiny scale: each reaches where it acts and leaves the loss (or weights) as they were."""

from __future__ import annotations

import gc
import hashlib
import json

import pytest
import torch
from _tiny_run import domain_encoder_init_args, tiny_init_args, write_pairs
from lightning import Callback, Trainer

from cxr_ldm.data.image_text_folder import ImageTextFolderDataModule
from cxr_ldm.data.prompt_tokens import PromptTokenizer
from cxr_ldm.models import LatentDiffusion, Trainable
from cxr_ldm.models.frozen_dtype import training_dtype
from cxr_ldm.models.fused_adamw import fused_applies, make_adamw
from cxr_ldm.models.text_embedding_cache import open_text_cache, text_cache_ready

PROMPTS = ["normal", "pleural effusion", "cardiomegaly", "small left pleural effusion"]


def tiny_model(**changes) -> LatentDiffusion:
    args = tiny_init_args(**changes)
    args["trainable"] = {name: Trainable(**spec) if isinstance(spec, dict) else spec
                         for name, spec in args["trainable"].items()}  # fmt: skip
    torch.manual_seed(0)
    return LatentDiffusion(**args)


def batch_of(prompts: list[str]) -> dict:
    generator = torch.Generator().manual_seed(1)
    return {
        "pixel_values": torch.rand(len(prompts), 3, 32, 32, generator=generator) * 2 - 1,
        "prompt": prompts,
    }


def loss_of(model: LatentDiffusion, batch: dict, stage: str = "train") -> torch.Tensor:
    torch.manual_seed(3)  # the same latent sample, condition dropout, noise and timesteps for each path
    with torch.no_grad():
        return model._shared_step(batch, stage)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs"), count=12, size=40)


def fit(model, pairs, root, *callbacks, max_steps: int = 2, **trainer_args) -> ImageTextFolderDataModule:
    datamodule = ImageTextFolderDataModule(str(pairs), image_size=32, batch_size=4, val_fraction=0.25)
    trainer_args.setdefault("accelerator", "cpu")
    trainer = Trainer(
        max_steps=max_steps,
        limit_val_batches=1,
        val_check_interval=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=list(callbacks),
        **trainer_args,
    )
    trainer.fit(model, datamodule)
    return datamodule


class BatchKeys(Callback):
    def __init__(self) -> None:
        self.keys: list[set[str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.keys.append(set(batch))


# ----------------------------------------------------------------------------- tokenization in workers
def test_tokens_from_the_batch_give_the_same_loss_as_prompt_strings():
    model = tiny_model(condition_dropout=0.5)
    batch = batch_of(PROMPTS * 2)
    tokens = PromptTokenizer(model.text.tokenizer, model.text.max_length)(batch["prompt"])
    # The strings beside the tokens are wrong on purpose: an equal loss shows the tokens were used.
    other = batch_of(["pneumothorax"] * 8)
    tokenized = {**other, **tokens}
    torch.manual_seed(3)
    assert any(model._dropped_rows(8)), "seed 3 must drop some rows, or the dropout path is not exercised"
    for stage in ("train", "val"):
        assert torch.equal(loss_of(model, batch, stage), loss_of(model, tokenized, stage))
        assert not torch.equal(loss_of(model, batch, stage), loss_of(model, other, stage))


def test_model_hands_its_tokenizer_to_the_data_module(pairs, tmp_path):
    keys = BatchKeys()
    model = tiny_model()
    datamodule = fit(model, pairs, tmp_path, keys, max_steps=1)
    assert keys.keys and all({"input_ids", "prompt"} <= k for k in keys.keys)
    batch = next(iter(datamodule.train_dataloader()))
    expected = model.text.tokenize(batch["prompt"])["input_ids"]
    assert torch.equal(batch["input_ids"], expected)


def test_mimic_data_module_collates_tokens(phantom_root, tmp_path):
    from cxr_ldm.data import MimicCxrDataModule

    datamodule = MimicCxrDataModule(
        str(phantom_root),
        image_size=32,
        batch_size=3,
        num_workers=1,
        cache_dir=str(tmp_path),
        no_finding_cap=None,
    )
    datamodule.setup()
    model = tiny_model()
    datamodule.set_prompt_tokenizer(PromptTokenizer(model.text.tokenizer, model.text.max_length))
    batch = next(iter(datamodule.val_dataloader()))  # tokenized in a worker process
    assert torch.equal(batch["input_ids"], model.text.tokenize(batch["prompt"])["input_ids"])
    assert set(datamodule.all_prompts()) >= set(batch["prompt"])


# ----------------------------------------------------------------------------- text-embedding cache
def test_text_cache_gives_the_same_loss_and_is_rebuilt_when_the_encoder_changes(pairs, tmp_path):
    model = tiny_model(condition_dropout=0.5, text_embedding_cache=True)
    fit(model, pairs, tmp_path, max_steps=1)
    folders = sorted((tmp_path / "cache").glob("text-embeddings-*"))
    assert len(folders) == 1 and text_cache_ready(folders[0])
    built = (folders[0] / "embeddings.npy").stat().st_mtime_ns

    # The cache as the training step reads it: same loss, train (dropout rows) and validation.
    model.text_cache = open_text_cache(model.text, model.trainer, model.trained_text_parts())
    batch = batch_of(["normal", "pleural effusion"] * 2)
    assert model.text_cache.covers(batch["prompt"])
    cached = {stage: loss_of(model, batch, stage) for stage in ("train", "val")}
    model.text_cache = None
    for stage, loss in cached.items():
        assert torch.equal(loss, loss_of(model, batch, stage))

    # The loss is read from the cache: a changed encoder does not move it while the cache is in place.
    model.text_cache = open_text_cache(model.text, model.trainer, model.trained_text_parts())
    saved = {k: v.clone() for k, v in model.text.encoder.state_dict().items()}
    with torch.no_grad():
        list(model.text.encoder.parameters())[-1].add_(0.1)
    assert torch.equal(loss_of(model, batch, "val"), cached["val"])
    model.text_cache = None
    assert not torch.equal(loss_of(model, batch, "val"), cached["val"])
    model.text.encoder.load_state_dict(saved)

    fit(model, pairs, tmp_path, max_steps=1)  # same encoder: the same cache, not rebuilt
    assert sorted((tmp_path / "cache").glob("text-embeddings-*")) == folders
    assert (folders[0] / "embeddings.npy").stat().st_mtime_ns == built

    with torch.no_grad():
        list(model.text.encoder.parameters())[-1].add_(0.1)
    fit(model, pairs, tmp_path, max_steps=1)
    assert len(list((tmp_path / "cache").glob("text-embeddings-*"))) == 2


def test_half_written_text_cache_is_not_ready(tmp_path):
    (tmp_path / "prompts.json").write_text("[]")
    (tmp_path / "meta.json").write_text("{}")
    (tmp_path / "attention_mask.npy").write_bytes(b"")
    assert not text_cache_ready(tmp_path)


def test_text_cache_is_not_used_when_the_text_encoder_trains(pairs, tmp_path):
    trainable = {"unet": Trainable(lr=1e-4), "text_encoder": Trainable(lr=1e-5)}
    model = tiny_model(trainable=trainable, text_embedding_cache=True)
    fit(model, pairs, tmp_path, max_steps=1)
    assert not list((tmp_path / "cache").glob("text-embeddings-*"))


def test_frozen_encoder_states_are_cached_under_a_trained_projection_and_train_the_same_weights(
    pairs, tmp_path
):
    """A frozen BERT-family encoder with a trained projection (the domain-frozen-unet arm): with the cache,
    the encoder runs once per prompt at fit start, not every step, and the fit ends on the same weights."""
    unet = {**domain_encoder_init_args()["components"]["unet_config"], "cross_attention_dim": 32}

    def fitted(cache: bool, root) -> tuple[LatentDiffusion, int, dict]:
        args = domain_encoder_init_args(
            unet_config=unet,
            text_projection="linear",
            trainable={"unet": Trainable(lr=1e-3), "text_projection": Trainable(lr=1e-3)},
            text_embedding_cache=cache,
            condition_dropout=0.5,
        )
        torch.manual_seed(0)
        model = LatentDiffusion(**args)
        initial = {name: value.clone() for name, value in model.text.projection.state_dict().items()}
        calls = []
        model.text.encoder.register_forward_hook(lambda *_: calls.append(1))
        torch.manual_seed(1)
        fit(model, pairs, root, max_steps=2)
        return model, len(calls), initial

    plain, plain_calls, _ = fitted(False, tmp_path / "plain")
    cached, cached_calls, initial = fitted(True, tmp_path / "cached")
    (folder,) = (tmp_path / "cached" / "cache").glob("text-embeddings-*")
    assert json.loads((folder / "meta.json").read_text())["level"] == "encoder"
    # the cache's one batch of prompts at fit start, against every training and validation step
    assert (cached_calls, plain_calls >= 3) == (1, True), (cached_calls, plain_calls)
    trained = cached.text.projection.state_dict()
    assert not any(torch.equal(trained[name], value) for name, value in initial.items())  # it trains
    plain_weights = plain.state_dict()
    for name, value in cached.state_dict().items():
        assert torch.equal(value, plain_weights[name]), name


# ----------------------------------------------------------------------------- fused AdamW
def test_fused_adamw_only_where_every_parameter_is_on_cuda():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert fused_applies([cuda, cuda])
    assert not fused_applies([cuda], enabled=False)
    assert not fused_applies([cuda, cpu])
    assert not fused_applies([cpu])
    assert not fused_applies([])
    optimizer = make_adamw([{"params": [torch.nn.Parameter(torch.ones(2))]}], fused=True)
    assert not optimizer.defaults["fused"]  # CPU parameters: the multi-tensor implementation
    assert optimizer.defaults["foreach"]


def test_adamw_on_cpu_updates_as_the_single_tensor_loop_bit_for_bit():
    """The CPU optimizer (foreach) moves every parameter exactly as torch's per-tensor AdamW loop."""
    shapes = [(3, 5), (7,), (2, 3, 3), (1,)]
    grads = torch.Generator().manual_seed(0)
    steps = [[torch.randn(shape, generator=grads) for shape in shapes] for _ in range(4)]
    moved = []
    for build in (lambda g: make_adamw(g), lambda g: torch.optim.AdamW(g, foreach=False)):
        params = [torch.nn.Parameter(torch.full(shape, 0.5)) for shape in shapes]
        optimizer = build([{"params": params[:2], "lr": 1e-3, "weight_decay": 1e-2},
                           {"params": params[2:], "lr": 3e-3}])  # fmt: skip
        for step in steps:
            for param, grad in zip(params, step, strict=True):
                param.grad = grad.clone()
            optimizer.step()
        moved.append(params)
    assert all(torch.equal(a, b) for a, b in zip(*moved, strict=True))
    assert not torch.equal(moved[0][0], torch.full((3, 5), 0.5))  # the parameters did move


def test_fused_adamw_is_off_on_cpu_even_when_asked(pairs, tmp_path):
    model = tiny_model(fused_adamw=True)
    fit(model, pairs, tmp_path, max_steps=1)
    assert not model.trainer.optimizers[0].defaults["fused"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_adamw_option_reaches_the_optimizer_on_cuda(pairs, tmp_path):
    for option in (True, False):
        model = tiny_model(fused_adamw=option)
        fit(model, pairs, tmp_path / str(option), max_steps=1, accelerator="gpu", devices=1)
        assert bool(model.trainer.optimizers[0].defaults["fused"]) is option
        assert model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)  # default on CUDA


# ----------------------------------------------------------------------------- channels_last
def test_channels_last_is_set_when_asked_and_off_by_default_on_cpu(pairs, tmp_path):
    on = tiny_model(channels_last=True)
    fit(on, pairs, tmp_path / "on", max_steps=1)
    conv = on.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    default = tiny_model()
    fit(default, pairs, tmp_path / "default", max_steps=1)
    assert default.unet.conv_in.weight.is_contiguous()


# ----------------------------------------------------------------------------- frozen weights in bf16
class Dtypes(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.vae = pl_module.vae.encoder.conv_in.weight.dtype
        self.text = list(pl_module.text.encoder.parameters())[-1].dtype
        self.unet = pl_module.unet.conv_in.weight.dtype


def test_frozen_weights_in_bf16_during_fit_float32_in_checkpoints_and_after(pairs, tmp_path):
    assert training_dtype("bf16-mixed") == torch.bfloat16 and training_dtype("32-true") is None
    model = tiny_model()
    before = {k: v.clone() for k, v in model.vae.state_dict().items()}
    dtypes = Dtypes()

    class SaveMidFit(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            trainer.save_checkpoint(tmp_path / "mid.ckpt")

    fit(model, pairs, tmp_path, dtypes, SaveMidFit(), max_steps=2, precision="bf16-mixed")
    assert (dtypes.vae, dtypes.text, dtypes.unet) == (torch.bfloat16, torch.bfloat16, torch.float32)
    after = model.vae.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items())
    saved = torch.load(tmp_path / "mid.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.equal(saved[f"vae.{k}"], v) for k, v in before.items())


def test_frozen_unet_under_lora_is_cast_but_adapters_stay_float32(pairs, tmp_path):
    lora = {"unet": {"rank": 4, "alpha": 4, "target_modules": ["to_q", "to_k", "to_v"]}}
    model = tiny_model(lora=lora, trainable={"unet_lora": Trainable(lr=1e-4)})

    class LoraDtypes(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            params = dict(pl_module.unet.named_parameters())
            self.adapters = {p.dtype for n, p in params.items() if "lora_" in n}
            self.base = {p.dtype for n, p in params.items() if "lora_" not in n}

    seen = LoraDtypes()
    fit(model, pairs, tmp_path, seen, max_steps=1, precision="bf16-mixed")
    assert seen.adapters == {torch.float32} and seen.base == {torch.bfloat16}
    assert {p.dtype for p in model.unet.parameters()} == {torch.float32}


def test_frozen_pretrained_weights_are_read_again_from_their_source_not_kept_in_float32(pairs, tmp_path):
    """LoRA on the tiny pretrained pipeline under bf16-mixed: no float32 host copy of the frozen U-Net, VAE
    and text encoder during the fit; sampling during the fit (`originals()`) and the model after it see the
    exact float32 values read again from the source."""
    from _rank_probe import float32_copy_bytes
    from _tiny_run import ROOT

    from cxr_ldm.models.diffusion_parts import Components

    model = LatentDiffusion(
        components=Components(pretrained_model_name_or_path=str(ROOT / "artifacts" / "tiny-pretrained")),
        trainable={"unet_lora": Trainable(lr=1e-3)},
        lora={"unet": {"rank": 2, "alpha": 2.0}},
    )
    frozen = {name: p for name, p in model.named_parameters() if not p.requires_grad}
    digest = lambda p: hashlib.sha256(p.detach().float().numpy().tobytes()).hexdigest()  # noqa: E731
    before = {name: digest(p) for name, p in frozen.items()}  # no float32 copies held by the test itself

    class Seen(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.copies = float32_copy_bytes(pl_module)
            self.dtypes = {p.dtype for p in frozen.values()}
            with pl_module.frozen_dtype.originals():
                self.originals = all(
                    p.dtype == torch.float32 and digest(p) == before[n] for n, p in frozen.items()
                )
            self.after_originals = {p.dtype for p in frozen.values()}

    seen = Seen()
    gc.collect()
    baseline = float32_copy_bytes(model)  # tensors of the same shapes left by other tests in this process
    fit(model, pairs, tmp_path, seen, max_steps=1, precision="bf16-mixed")
    frozen_bytes = sum(p.numel() for p in frozen.values()) * 4
    assert seen.copies - baseline < 0.01 * frozen_bytes and seen.dtypes == seen.after_originals == {
        torch.bfloat16
    }
    assert seen.originals
    assert all(p.dtype == torch.float32 and digest(p) == before[n] for n, p in frozen.items())


# ----------------------------------------------------------------------------- compile
def test_compile_option_keeps_state_dict_keys(pairs, tmp_path):
    model = tiny_model(compile_unet=True)
    keys = list(model.state_dict())
    fit(model, pairs, tmp_path, max_steps=0, num_sanity_val_steps=0)  # setup() compiles; nothing runs
    assert model.unet._compiled_call_impl is not None
    assert list(model.state_dict()) == keys


@pytest.mark.slow  # inductor compiles the tiny U-Net in about 5 minutes on 2 loaded CPU cores
def test_compiled_unet_trains_one_step(pairs, tmp_path):
    model = tiny_model(compile_unet=True)
    keys = list(model.state_dict())
    try:
        fit(model, pairs, tmp_path, max_steps=1)
    except Exception as error:  # inductor needs a working C++ toolchain on CPU
        pytest.skip(f"torch.compile does not work on this machine: {type(error).__name__}: {error}")
    assert model.global_step == 1
    assert list(model.state_dict()) == keys
