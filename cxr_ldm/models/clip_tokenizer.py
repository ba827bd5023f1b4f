"""An exact CLIP tokenizer built offline from the BPE merges file that `open_clip` ships.

CLIP's vocabulary is fully determined by its merges list: 256 byte symbols, the same with an end-of-word
marker, one token per merge, then the two special tokens. Writing `vocab.json` and `merges.txt` from it
gives a `transformers.CLIPTokenizer` identical to the one published with CLIP ViT-L/14.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer

CLIP_MERGES = 49152 - 256 - 2  # merges used by CLIP ViT-L/14 (vocabulary of 49408)
CLIP_MAX_LENGTH = 77


def _bytes_to_unicode() -> dict[int, str]:
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def _open_clip_bpe_file() -> Path:
    try:
        import open_clip
    except ImportError as error:
        raise ImportError(
            "building the CLIP tokenizer offline needs the `open-clip-torch` package "
            "(pip install open-clip-torch), or give model.init_args.tokenizer_name_or_path a tokenizer directory"
        ) from error
    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def write_clip_tokenizer_files(out_dir: str | os.PathLike) -> Path:
    """Write `vocab.json`, `merges.txt` and the tokenizer config of CLIP into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(_open_clip_bpe_file(), "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : CLIP_MERGES + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_text = "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n"
    (out / "merges.txt").write_text(merges_text, encoding="utf-8")
    config = {
        "model_max_length": CLIP_MAX_LENGTH,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
        "tokenizer_class": "CLIPTokenizer",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out


@lru_cache(maxsize=1)
def clip_tokenizer() -> CLIPTokenizer:
    """CLIP ViT-L/14's tokenizer (77 tokens, `<|endoftext|>` padding), built without a download."""
    with tempfile.TemporaryDirectory(prefix="cxr-ldm-clip-tok-") as tmp:
        return CLIPTokenizer.from_pretrained(write_clip_tokenizer_files(tmp))
