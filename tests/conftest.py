"""Shared fixtures: tiny real-architecture models built once per test session, real PNG images."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from rlvprm.models.tiny import ARCHES, build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Folder of a tiny model per architecture, built lazily."""
    root = tmp_path_factory.mktemp("tiny")
    built: dict[str, str] = {}

    def get(arch: str) -> str:
        if arch not in built:
            built[arch] = str(build_tiny_model(arch, root / arch, seed=0))
        return built[arch]

    return get


@pytest.fixture(params=ARCHES)
def arch(request):
    return request.param


def digit_image(text: str, size=(84, 28), color="black") -> Image.Image:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((4, 8), text, fill=color)
    return img


@pytest.fixture
def images():
    return [digit_image("3 7 5"), digit_image("8 1 2", color="red")]
