"""Stage 2's model: torchvision model names, the weights (pretrained from the torch hub cache or a local
state-dict file, with one clear line when they cannot be had offline) and the feature head."""
import contextlib
import difflib
import os
import sys

from . import report
from .report import SetupError

DEFAULT_MODEL = "resnet18"
# googlenet and inception_v3 are built differently when their pretrained weights are loaded
# (torchvision's builders set these before loading): a local state dict of those weights needs it too.
_PRETRAINED_KWARGS = {
    "googlenet": dict(transform_input=True, aux_logits=False, init_weights=False),
    "inception_v3": dict(transform_input=True, aux_logits=False, init_weights=False),
}


def model_names():
    """Every torchvision classification model name (``resnet18``, ``efficientnet_b0``, ...)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def resolve_model_name(name: str) -> str:
    """``name`` as torchvision spells it; raises :class:`SetupError` listing close matches."""
    names = model_names()
    if name in names:
        return name
    if name.lower() in names:
        return name.lower()
    close = difflib.get_close_matches(name.lower(), names, n=6, cutoff=0.5)
    hint = ("close matches: " + ", ".join(close)) if close else \
        "any torchvision classification model, e.g. resnet18, resnet50, efficientnet_b0, convnext_tiny"
    raise SetupError("unknown model %r; %s" % (name, hint))


def hub_checkpoint_path(weights) -> str:
    """Where torch's hub cache keeps the file of a torchvision weights enum ($TORCH_HOME/hub/checkpoints)."""
    import torch.hub
    from urllib.parse import urlparse

    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))


def sha256_file(path) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def published_digest(weights) -> str:
    """The start of the sha256 of torchvision's published file for the weights enum ``weights``: the
    hex part its file name carries (``resnet18-f37072fd.pth`` -> ``f37072fd``), as torch.hub checks
    it on download."""
    from urllib.parse import urlparse

    return os.path.basename(urlparse(weights.url).path).rsplit("-", 1)[-1].split(".")[0]


def is_published(weights, digest: str) -> bool:
    """Whether a weights file whose sha256 is ``digest`` (hex) is the published file of ``weights``.
    A file in the hub cache is not checked again once downloaded, so random-init weights saved under
    the published name (an offline demo) are told apart only by their hash."""
    prefix = published_digest(weights)
    return len(prefix) >= 6 and digest.startswith(prefix)


def _read_state_dict(path):
    """The state dict in the file at ``path`` (a bare state dict, or one under 'state_dict'/'model')."""
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise ValueError("not a state dict")
    return obj


def load_model(name: str, weights_path=None):
    """Build model ``name`` with its weights, as for classification.

    Default weights: the DEFAULT torchvision weights, from the hub cache or downloaded into it.
    ``weights_path``: a local state-dict file. Returns ``(model, weights_info, transforms)`` where
    ``weights_info`` is a dict for the sidecar (``weights``, ``weights_published``: whether the file is
    torchvision's published one, see :func:`is_published`; None when it could not be read) and
    ``transforms`` the weights' preprocessing.
    Raises :class:`SetupError` when the weights cannot be had, with the way out.
    """
    from torchvision.models import get_model, get_model_weights

    default = get_model_weights(name).DEFAULT
    transforms = default.transforms()  # metadata only: never downloads
    if weights_path is not None:
        weights_path = os.fspath(weights_path)
        try:
            digest = sha256_file(weights_path)
            state = _read_state_dict(weights_path)
        except OSError as exc:
            raise SetupError("cannot read weights file %s: %s" % (weights_path, exc.strerror or exc))
        except Exception as exc:  # torch.load's many ways of saying "not a checkpoint"
            raise SetupError("cannot read weights file %s: not a PyTorch state-dict file (%s)" % (
                weights_path, report.one_line(exc)[:160]))
        kwargs = dict(_PRETRAINED_KWARGS.get(name, {}))
        kwargs["num_classes"] = len(default.meta["categories"])
        model = get_model(name, weights=None, **kwargs)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise SetupError("weights file %s does not fit model %s: %s" % (
                weights_path, name, report.one_line(exc)[:300]))
        info = {"weights": "sha256:" + digest, "weights_file": os.path.abspath(weights_path),
                "weights_published": is_published(default, digest)}
        return model, info, transforms

    cached = hub_checkpoint_path(default)
    try:  # torch.hub says "Downloading: ..." (on stdout: moved to stderr) and shows its progress bar
        with contextlib.redirect_stdout(sys.stderr):
            model = get_model(name, weights=default)
    except OSError as exc:  # urllib's URLError/HTTPError and socket errors are OSErrors
        if os.path.exists(cached):
            raise SetupError("cannot read cached weights %s: %s (delete it to download again, or "
                             "pass --weights PATH)" % (cached, report.one_line(exc)))
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise SetupError("cannot download weights %s (%s); put that file at %s or pass --weights PATH "
                         "(a state-dict file)" % (default.url, report.one_line(reason), cached))
    except (RuntimeError, ValueError, EOFError) as exc:
        raise SetupError("cannot load weights %s from %s: %s (delete it to download again, or pass "
                         "--weights PATH)" % (default, cached, report.one_line(exc)[:200]))
    try:
        published = is_published(default, sha256_file(cached))
    except OSError:  # a hub directory other than torch's default: not where we looked
        published = None
    return model, {"weights": str(default), "weights_published": published}, transforms


def weight_categories(name: str) -> list:
    """The class names of model ``name``'s default weights (``meta["categories"]``; never downloads)."""
    from torchvision.models import get_model_weights

    return list(get_model_weights(name).DEFAULT.meta.get("categories") or [])


def last_linear(model):
    """``(qualified name, module)`` of the last ``nn.Linear`` of ``model``: its classifier, the layer
    :func:`feature_head` removes; raises :class:`SetupError` for a model without one."""
    import torch.nn as nn

    last = None
    for qualified, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (qualified, module)
    if last is None:
        raise SetupError("model has no final Linear classifier layer to take features from")
    return last


def feature_head(model):
    """Replace the last ``nn.Linear`` (the classifier) with Identity, so the model outputs its input.

    Returns ``(model, dim)``; raises :class:`SetupError` for a model without a Linear layer.
    """
    import torch.nn as nn

    qualified, linear = last_linear(model)
    parent_name, _, attr = qualified.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Identity())
    return model, linear.in_features
