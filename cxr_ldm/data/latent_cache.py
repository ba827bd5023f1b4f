"""A latent cache for a frozen VAE: every image's posterior (mean, log-variance) encoded once.

Training from it skips the VAE encoder on every step (about a third of Stable Diffusion's training
compute at 512 px). Items then carry `latent_parameters` (2C, h, w) instead of `pixel_values`; the model
samples a latent from them, so the training distribution is the same as encoding on the fly. Rows follow
the index order; `valid.npy` marks rows whose image could not be decoded. `latents.npy` is moved into
place last, so a reader that finds it can trust the cache is complete.

`vae.json` holds a hash of the encoding VAE's config and weights: latents are only right for the VAE that
made them, so a model whose own VAE differs is refused (`check_latent_cache_vae`), before and after a build.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cxr_ldm.data.atomic import atomic_path, options_key
from cxr_ldm.data.bad_samples import BadSampleError, BadSamplePolicy, SkipLog, handle_bad_sample
from cxr_ldm.data.image_io import ResizePolicy, load_gray, to_model_tensor
from cxr_ldm.data.memmap_rows import MemmapRows, write_valid_rows

LATENTS_FILE = "latents.npy"
VALID_FILE = "valid.npy"
VAE_FILE = "vae.json"


def vae_fingerprint(source: str) -> str:
    """Identify a VAE: a local folder by its config and weight files' sizes and times, a hub id by name."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return source
    vae_dir = folder / "vae" if (folder / "vae").is_dir() else folder
    parts = []
    for path in sorted(vae_dir.iterdir()):
        if path.is_file():
            stat = path.stat()
            parts.append([path.name, stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def latent_cache_key(index_key: str, image_size: int, resize: str, vae_source: str) -> str:
    return options_key(
        {
            "index": index_key,
            "image_size": image_size,
            "resize": resize,
            "vae": vae_fingerprint(vae_source),
            "version": 2,
        }
    )


def weights_hash(module: torch.nn.Module, extra: dict[str, torch.Tensor] | None = None) -> str:
    """sha256 (16 hex digits) of a module's config and float32 weights, then of `extra` tensors (an EMA's
    shadows, say) by name: equal exactly when the weights are."""
    digest = hashlib.sha256()
    config = {k: v for k, v in dict(getattr(module, "config", {})).items() if not str(k).startswith("_")}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in [*sorted(module.state_dict().items()), *sorted((extra or {}).items())]:
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def vae_weights_hash(vae: torch.nn.Module) -> str:
    """A VAE's `weights_hash`: equal exactly when it encodes alike."""
    return weights_hash(vae)


def check_latent_cache_vae(folder: str | os.PathLike, source: str, model_vae_hash: str | None) -> None:
    """Refuse a latent cache made by another VAE than the model's (when the model's VAE is known)."""
    path = Path(folder) / VAE_FILE
    if model_vae_hash is None or not path.is_file():
        return
    cached = json.loads(path.read_text()).get("vae_hash")
    if cached != model_vae_hash:
        from cxr_ldm.errors import ConfigError

        raise ConfigError(
            f"data.init_args.latent_cache_vae '{source}' is not the model's VAE (weights hash {cached}, the "
            f"model's {model_vae_hash}): latents from it would not match what the model decodes; point "
            "latent_cache_vae at the model's own VAE (its pretrained_model_name_or_path), or set it to null"
        )


def latent_cache_ready(folder: str | os.PathLike) -> bool:
    return (Path(folder) / LATENTS_FILE).is_file() and (Path(folder) / VALID_FILE).is_file()


def load_vae(source: str):
    """A diffusers VAE from a pipeline folder or hub id (its `vae/` subfolder) or a VAE folder."""
    from diffusers import AutoencoderKL

    from cxr_ldm.errors import ConfigError
    from cxr_ldm.pretrained import check_source

    check_source(source, "data.init_args.latent_cache_vae")
    folder = Path(source).expanduser()
    subfolder = "vae" if not folder.is_dir() or (folder / "vae").is_dir() else None
    try:
        return AutoencoderKL.from_pretrained(source, subfolder=subfolder)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"data.init_args.latent_cache_vae '{source}' is not a diffusers VAE or pipeline folder "
            f"that can be loaded here ({error.__class__.__name__}); give the folder of the model's VAE"
        ) from error


def _leaves_random_state(function):
    """Run `function` on a copy of torch's CPU generator state, restored afterwards."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            return function(*args, **kwargs)

    return wrapper


class _Images(Dataset):
    def __init__(self, paths: list[Path], image_size: int, resize: ResizePolicy) -> None:
        self.paths, self.image_size, self.resize = paths, image_size, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, row: int):
        try:
            gray = load_gray(self.paths[row], self.image_size, self.resize)
            return row, to_model_tensor(gray, 3), ""
        except BadSampleError as error:
            return row, torch.zeros(3, self.image_size, self.image_size), f"{error.reason}"


@_leaves_random_state
@torch.no_grad()
def build_latent_cache(
    paths: list[Path],
    folder: str | os.PathLike,
    vae_source: str,
    image_size: int,
    resize: ResizePolicy = "pad",
    policy: BadSamplePolicy = "skip",
    log: SkipLog | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    model_vae_hash: str | None = None,
) -> None:
    """Encode every image with the VAE (on the GPU when there is one) into `folder/latents.npy` (float16).

    With `model_vae_hash` (the training model's VAE), a VAE that differs is refused before encoding anything.
    The caller's random state is left as it was (a data loader draws its base seed from torch's generator):
    a fit that builds the cache trains the same model as one that finds it on disk.
    """
    folder = Path(folder)
    log = log if log is not None else SkipLog()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vae = load_vae(vae_source).eval()
    record = {"vae_hash": vae_weights_hash(vae), "source": str(vae_source)}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / VAE_FILE) as tmp, open(tmp, "w") as handle:
        json.dump(record, handle)
    check_latent_cache_vae(folder, vae_source, model_vae_hash)
    vae = vae.to(device)
    loader = DataLoader(_Images(paths, image_size, resize), batch_size=batch_size, num_workers=num_workers)
    valid = np.ones(len(paths), dtype=bool)
    latents = None
    with atomic_path(folder / LATENTS_FILE) as tmp:
        for rows, pixels, errors in tqdm(loader, desc="latent cache", unit="batch", leave=False):
            parameters = vae.encode(pixels.to(device, vae.dtype)).latent_dist.parameters.float().cpu()
            if latents is None:
                shape = (len(paths), *parameters.shape[1:])
                latents = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
            latents[rows.numpy()] = parameters.numpy().astype(np.float16)
            for row, reason in zip(rows.tolist(), errors, strict=True):
                if reason:
                    valid[row] = False
                    handle_bad_sample(BadSampleError(paths[row], reason, "image"), policy, log, "load")
        if latents is None:
            raise ValueError(f"no images to encode for the latent cache in {folder}")
        latents.flush()
        del latents
        write_valid_rows(folder / VALID_FILE, valid)


class LatentCache(MemmapRows):
    """Read side of the latent cache: `get(row)` is the posterior parameters (2C, h, w) as float32, or None
    for a bad image."""

    array_file = LATENTS_FILE
    valid_file = VALID_FILE

    def convert(self, row: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(row, dtype=np.float32))
