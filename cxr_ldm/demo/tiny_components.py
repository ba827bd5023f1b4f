"""The demo's image side: 64 px, as the tiny pretrained pipeline's configs (configs/pretrain/) are built for."""

from __future__ import annotations

IMAGE_SIZE = 64
