"""Synthetic stand-in for MIMIC-CXR-JPG and its reports: same layout and files, drawn anatomy, known truth.

It is not medical data; it exists so the pipeline can be built, tested and benchmarked without credentials.
"""

from __future__ import annotations

from cxr_ldm.phantom.generate import FINDINGS_FILE, MANIFEST_FILE, generate_phantom

__all__ = ["FINDINGS_FILE", "MANIFEST_FILE", "generate_phantom"]
