"""The inference samplers by name (cxr_ldm/models/samplers.py builds them), readable by a command line without
loading diffusers."""

SAMPLER_NAMES = ("pndm", "ddim", "dpm++", "euler", "euler_a", "unipc")
