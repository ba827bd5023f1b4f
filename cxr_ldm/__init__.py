"""cxr-ldm: adapt latent diffusion models to chest X-rays."""

__version__ = "0.1.0"
