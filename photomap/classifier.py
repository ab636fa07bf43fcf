"""The model's own classifier, kept beside the feature vectors as ``<features>/classifier.npz``: the
final Linear layer that stage 2 removes maps a saved vector to class logits. Written (stage 2) and
read (stage 3) only here.

Format: a NumPy ``.npz`` (no pickles) with ``weight`` (C, D) float32, ``bias`` (C,) float32 and
``categories`` (C,) str (the weights' ``meta["categories"]``); ``features.json`` names it under
``"classifier"`` (``null`` plus ``"classifier_note"`` when the model's last Linear layer does not act
on the saved vector, so there is none).
"""
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from .fsutil import atomic_write

NAME = "classifier.npz"


@dataclass(frozen=True)
class Classifier:
    """``logits = vectors @ weight.T + bias``; ``categories[k]`` names class k."""
    weight: np.ndarray
    bias: np.ndarray
    categories: tuple

    @property
    def dim(self) -> int:
        return self.weight.shape[1]


def path_in(features_dir) -> str:
    """Where the classifier of ``features_dir`` lives."""
    return os.path.join(os.fspath(features_dir), NAME)


def save(features_dir, weight, bias, categories) -> None:
    """Write ``classifier.npz`` into ``features_dir`` atomically (shapes checked first: ``ValueError``)."""
    weight = np.asarray(weight, np.float32)
    bias = np.asarray(bias, np.float32)
    names = np.asarray([str(c) for c in categories], dtype=str)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],) or names.shape != bias.shape:
        raise ValueError("classifier shapes do not agree: weight %s, bias %s, %d categories"
                         % (weight.shape, bias.shape, len(names)))
    with atomic_write(path_in(features_dir)) as f:
        np.savez(f, weight=weight, bias=bias, categories=names)


def load(features_dir, dim=None):
    """Read and check the classifier of ``features_dir`` -> ``(Classifier, None)``, or
    ``(None, reason)`` with one short reason (none there, unreadable, shapes that disagree, or a
    vector size ``dim`` it does not take); never raises for a bad file."""
    path = path_in(features_dir)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("weight", "bias", "categories") if key not in data.files]
            if missing:
                return None, "%s lacks the array %s" % (path, ", ".join(missing))
            weight, bias, names = data["weight"], data["bias"], data["categories"]
    except FileNotFoundError:
        return None, "no %s in %s (made by an older stage 2 or a model without one; run " \
                     "embeddings.py again on that folder to add it)" % (NAME, features_dir)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return None, "%s is unreadable (%s)" % (path, " ".join(str(exc).split())[:120])
    if weight.ndim != 2 or bias.ndim != 1 or names.ndim != 1 \
            or not weight.shape[0] == bias.shape[0] == names.shape[0] or weight.shape[0] == 0:
        return None, "%s has shapes that do not agree: weight %s, bias %s, categories %s" % (
            path, weight.shape, bias.shape, names.shape)
    if not (np.issubdtype(weight.dtype, np.floating) and np.issubdtype(bias.dtype, np.floating)
            and names.dtype.kind == "U"):
        return None, "%s holds arrays of the wrong types (%s, %s, %s)" % (
            path, weight.dtype, bias.dtype, names.dtype)
    if dim is not None and weight.shape[1] != dim:
        return None, "%s takes %d-d vectors, but the features are %d-d" % (path, weight.shape[1], dim)
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        return None, "%s holds values that are not finite numbers" % path
    return Classifier(weight.astype(np.float32), bias.astype(np.float32),
                      tuple(str(c) for c in names)), None


def probe_head(model, linear, input_size):
    """Whether ``linear`` (the layer stage 2 replaces by Identity) maps the saved vector straight to
    the model's output: one eval-mode forward pass of two random ``input_size`` (h, w) images checks
    that the layer runs once and that its output *is* the model's output. Returns ``(weight, bias,
    None)`` as NumPy float32 arrays, or ``(None, None, reason)``. Needs torch (stage 2 only)."""
    import torch

    seen = []
    hook = linear.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    was_training = model.training
    model.eval()
    try:
        gen = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            out = model(torch.rand(2, 3, *input_size, generator=gen))
    except Exception as exc:  # noqa: BLE001 - a model we cannot probe just goes without labels
        return None, None, "probing the model failed (%s)" % " ".join(str(exc).split())[:120]
    finally:
        hook.remove()
        model.train(was_training)
    if len(seen) != 1:
        return None, None, "its last Linear layer runs %d times per image" % len(seen)
    if not isinstance(out, torch.Tensor) or out.shape != seen[0].shape or not torch.equal(out, seen[0]):
        return None, None, "layers come after its last Linear layer, so that layer does not act on " \
                           "the saved vector"
    bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
    return linear.weight.detach().float().cpu().numpy(), bias.detach().float().cpu().numpy(), None


class Head:
    """Stage 2's hook, in two steps around the removal of the classifier layer.

    ``Head(features_dir, model, linear, input_size, categories)``, called while ``linear`` is still in
    ``model``, takes its weights (with :func:`probe_head`) unless ``features_dir`` already holds a
    valid ``classifier.npz``. After features.json has been checked, :meth:`keep` writes the file
    and returns what features.json says about it.
    """

    def __init__(self, features_dir, model, linear, input_size, categories):
        self.features_dir = features_dir
        self.present = load(features_dir, linear.in_features)[0] is not None
        self.weight = self.bias = self.reason = None
        self.categories = list(categories)
        if not self.present:
            self.weight, self.bias, self.reason = probe_head(model, linear, input_size)
            if self.reason is None and len(self.categories) != self.weight.shape[0]:
                self.reason = "the model has %d classes but its weights name %d categories" % (
                    self.weight.shape[0], len(self.categories))

    def keep(self, old_sidecar):
        """Write ``classifier.npz`` when it is missing or unreadable; return ``(entries, note)``:
        the features.json entries (``classifier``, and ``classifier_note`` when there is none) and
        the one line to say when there is none, ``None`` when fine or said on an earlier run."""
        if self.present:
            return {"classifier": NAME}, None
        if self.reason is None:
            save(self.features_dir, self.weight, self.bias, self.categories)
            return {"classifier": NAME}, None
        entries = {"classifier": None, "classifier_note": self.reason}
        said = bool(old_sidecar) and "classifier" in old_sidecar and old_sidecar["classifier"] is None
        return entries, None if said else "no %s: %s; the map's clusters will be unnamed" % (
            NAME, self.reason)
