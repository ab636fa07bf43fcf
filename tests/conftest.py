"""Shared test fixtures: generated photos, offline random-init weights."""
import os

import pytest

# The repository root, where the three commands are (for the tests that run them as users do).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# File name torchvision's ResNet18_Weights.IMAGENET1K_V1 is cached under in $TORCH_HOME/hub/checkpoints.
RESNET18_CHECKPOINT = "resnet18-f37072fd.pth"


def make_photo(path, size=(640, 480), color=(200, 120, 40), mode="RGB", fmt=None, pattern=True, **save):
    """Write a small generated photo at ``path`` (a gradient plus a colour block) and return the path."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    if pattern:
        draw = ImageDraw.Draw(img)
        draw.rectangle([w // 8, h // 8, w // 2, h // 2], fill=tuple(color))
        draw.ellipse([w // 2, h // 3, w - w // 10, h - h // 10], fill=tuple(255 - c for c in color))
    if mode != "RGB":
        img = img.convert(mode)
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    img.save(path, fmt, **save)
    return path


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory):
    """A random-init (seeded) resnet18 state dict saved to a file, for offline tests of stage 2."""
    import torch
    import torchvision

    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture
def torch_home(random_weights, tmp_path, monkeypatch):
    """A $TORCH_HOME whose hub cache holds the random weights under torchvision's own file name,
    so the default (pretrained) loading path runs for real but offline."""
    home = tmp_path / "torch_home"
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    os.symlink(random_weights, ckpt / RESNET18_CHECKPOINT)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home
