"""Stage 2: images in, one penultimate-layer feature vector per image out, into a feature folder.

The pipeline: DataLoader worker processes open, decode, resize and crop each image (PIL, the
weights' own transforms) into a uint8 tensor; they start while the main process prepares the
network. The main process converts a batch to float and normalises it on the device, runs the
:class:`Network` (inference mode, BatchNorm folded into the convolutions; on CPUs with native bf16
on oneDNN's own layout, elsewhere channels_last under bf16/fp16 autocast) and hands the float32
vectors to a writer thread that saves them atomically through :mod:`photomap.features`.
"""
import contextlib
import difflib
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from . import classifier, features, fsutil, report
from .report import SetupError, Tally, printable

STAGE = "embeddings"
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_MODEL = "resnet18"
# googlenet and inception_v3 are built differently when their pretrained weights are loaded
# (torchvision's builders set these before loading): a local state dict of those weights needs it too.
_PRETRAINED_KWARGS = {
    "googlenet": dict(transform_input=True, aux_logits=False, init_weights=False),
    "inception_v3": dict(transform_input=True, aux_logits=False, init_weights=False),
}


# ---------------------------------------------------------------------------- model and weights

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


def weight_categories(name: str) -> list:
    """The class names of model ``name``'s default weights (``meta["categories"]``; never downloads)."""
    from torchvision.models import get_model_weights

    return list(get_model_weights(name).DEFAULT.meta.get("categories") or [])


def load_model(name: str, weights_path=None):
    """Build model ``name`` with its weights, as for classification.

    Default weights: the DEFAULT torchvision weights, from the hub cache or downloaded into it.
    ``weights_path``: a local state-dict file. Returns ``(model, weights_info, transforms)`` where
    ``weights_info`` is a dict for the sidecar and ``transforms`` the weights' preprocessing.
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
        info = {"weights": "sha256:" + digest, "weights_file": os.path.abspath(weights_path)}
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
    return model, {"weights": str(default)}, transforms


def last_linear(model):
    """``(qualified name, module)`` of the last ``nn.Linear`` of ``model`` (its classifier);
    raises :class:`SetupError` for a model without one."""
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


def fold_batchnorm(model):
    """Fold eval-mode BatchNorm into the preceding convolutions (torch.fx); ``(model, folded)``.

    Models that torch.fx cannot trace are returned unchanged with ``folded=0``.
    """
    import torch.nn as nn
    from torch.fx.experimental.optimization import fuse

    before = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not before:
        return model, 0
    try:
        fused = fuse(model)
    except Exception:  # fx tracing fails on data-dependent control flow: keep the plain model
        return model, 0
    after = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    return fused, before - after


# ---------------------------------------------------------------------------- device and precision

def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX or AVX512-BF16), where bf16 beats fp32."""
    import torch

    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except RuntimeError:
                pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def choose_device(requested: str):
    """The ``torch.device`` for ``--device``; raises :class:`SetupError` when it is not available."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise SetupError("--device cuda: no CUDA GPU is available here (torch %s%s); use --device cpu" % (
            torch.__version__, ", built without CUDA" if torch.version.cuda is None else ""))
    if requested == "mps" and not mps_ok:
        raise SetupError("--device mps: Apple's Metal backend is not available here; use --device cpu")
    if requested not in DEVICES:
        raise SetupError("--device must be one of %s, not %r" % ("|".join(DEVICES), requested))
    return torch.device(requested)


def choose_precision(requested: str, device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``--precision`` on ``device``.

    auto: on CUDA bf16 where supported, else fp16; on MPS fp16; on CPU bf16 only where the CPU
    has native bf16 (elsewhere bf16 is emulated and slower than fp32), else fp32.
    """
    import torch

    if requested not in PRECISIONS:
        raise SetupError("--precision must be one of %s, not %r" % ("|".join(PRECISIONS), requested))
    if requested != "auto":
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise SetupError("--precision bf16: this GPU has no bf16; use fp16 or fp32")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def _autocast(device, precision):
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def onednn_model(model, dtype, size):
    """``model`` run on oneDNN's own tensor layout with its weights reordered once, or None.

    Eager PyTorch on CPU hands each convolution plain tensors and weights that oneDNN reorders on
    every call, and its channels_last max pooling is slow; :func:`torch.utils.mkldnn.to_mkldnn`
    keeps activations in oneDNN's blocked layout between layers and prepacks the weights once (in
    ``dtype``). resnet18's forward pass in bf16 ran 1.13x faster that way here (median of 20
    interleaved rounds, 1.10-1.20x). Only some layer types exist on that layout
    (convolution, linear, pooling, ReLU, add: ResNets, VGG, AlexNet): for any other model, or if its
    output on a probe batch of ``size`` (H, W) is not the plain model's (cosine < 0.999), returns None.
    """
    import contextlib
    import copy
    import io
    import warnings

    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    probe = torch.rand((1, 3) + tuple(size), generator=torch.Generator().manual_seed(0)) * 4 - 2
    try:
        # torch.fx prints the failing line of a traced model to stderr before raising: a model
        # oneDNN cannot run is expected here, so keep that out of the user's terminal.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")  # torch.utils.mkldnn is built on torch.jit.script_method
            from torch.utils.mkldnn import to_mkldnn

            with torch.inference_mode():
                want = model(probe).float()
            converted = to_mkldnn(copy.deepcopy(model), dtype)
            with torch.inference_mode():
                got = converted(probe.to(dtype).to_mkldnn())
                got = (got.to_dense() if got.is_mkldnn else got).float()
    except Exception:  # an op without a oneDNN-layout kernel: the plain model it is
        return None
    if got.shape != want.shape or \
            torch.nn.functional.cosine_similarity(got, want, dim=1).min().item() < 0.999:
        return None
    return converted


class Network:
    """The feature extractor on its device: batches from :class:`Preprocess` in, float32 vectors out.

    BatchNorm is folded into the convolutions. On CPU in bf16, models that oneDNN's layout supports
    run there (:func:`onednn_model`); everything else runs eager in channels_last under autocast
    (bf16/fp16) or in fp32.
    """

    def __init__(self, model, device, precision, preprocess):
        import torch

        self.device, self.precision, self.preprocess = device, precision, preprocess
        model, self.folded = fold_batchnorm(model.eval())
        self.onednn = self.model = None
        if device.type == "cpu" and precision == "bf16":
            self.onednn = onednn_model(model, torch.bfloat16, preprocess.crop_size)
        if self.onednn is None:  # on oneDNN's layout its prepacked copy is all that runs
            self.model = model.to(device, memory_format=torch.channels_last)

    def describe(self) -> str:
        """How the network runs, for the log: ``bf16 (oneDNN layout)``, ``fp16 autocast``, ``fp32``."""
        if self.onednn is not None:
            return self.precision + " (oneDNN layout)"
        return "fp32" if self.precision == "fp32" else self.precision + " autocast"

    def __call__(self, batch):
        """Features of ``batch`` (on any device): float32 (N, dim) on the network's device."""
        import torch

        x = self.preprocess.on_device(batch.to(self.device, non_blocking=True))
        if self.onednn is not None:
            return self.onednn(x.to(torch.bfloat16).to_mkldnn()).to_dense().float()
        x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(self.device, self.precision):
            return self.model(x).float()


# ---------------------------------------------------------------------------- reading images

def load_rgb(path):
    """Open, decode and orient the image at ``path`` as an RGB PIL image; raises on bad input."""
    from PIL import Image, ImageOps

    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise report.EmptyFile()
        with Image.open(f) as img:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return img if img.mode == "RGB" else img.convert("RGB")


class Preprocess:
    """The weights' transforms split in two: a CPU part for the worker processes (resize and crop in
    PIL, to an HWC uint8 tensor: four times fewer bytes to pass on and to copy to a GPU than float)
    and a device part (scale to [0, 1], normalise) run on a whole batch.

    Resize-then-centre-crop is done as one PIL resize of just the source region that the crop keeps
    (``Image.resize(box=...)``): the same sampling positions and filter as the two steps, at about
    half the cost, since the pixels cropped away are never computed. Values differ from the two-step
    result by rounding only: at most 2 levels of 255 (for resnet18 on stage-1 thumbnails, 1 level in
    about 0.5 % of values). Transforms that are not torchvision's ``ImageClassification`` run whole
    in the workers."""

    def __init__(self, transforms):
        from torchvision.transforms._presets import ImageClassification

        self.transforms = transforms
        self.split = isinstance(transforms, ImageClassification)
        self._affine = {}  # device -> (scale, shift) of the normalisation

    @property
    def crop_size(self):
        """Height and width of the network's input."""
        size = getattr(self.transforms, "crop_size", None) or [224]
        return (size[0], size[-1])

    def crop_box(self, width, height):
        """``(size, box)`` for ``Image.resize`` doing resize-then-centre-crop of a ``width`` x
        ``height`` image in one step, or None where that needs padding or is no resize at all.

        Sizes and offsets follow torchvision's ``resize`` (short side to ``resize_size``, long side
        truncated) and ``center_crop`` (offsets rounded)."""
        t = self.transforms
        if len(t.resize_size) != 1:
            return None
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = t.resize_size[0], int(t.resize_size[0] * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        crop_h, crop_w = self.crop_size
        if crop_h > new_h or crop_w > new_w or (new_w, new_h) == (width, height):
            return None
        top, left = int(round((new_h - crop_h) / 2.0)), int(round((new_w - crop_w) / 2.0))
        sx, sy = width / new_w, height / new_h
        return (crop_w, crop_h), (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)

    def on_cpu(self, img):
        """PIL image -> HWC uint8 tensor when split, else the transforms' own CHW float tensor."""
        if not self.split:
            return self.transforms(img)
        import numpy as np
        import torch
        import torchvision.transforms.functional as F

        t = self.transforms
        one_step = self.crop_box(*img.size)
        if one_step is not None:
            size, box = one_step
            img = img.resize(size, F.pil_modes_mapping[t.interpolation], box=box)
        else:
            img = F.resize(img, t.resize_size, interpolation=t.interpolation, antialias=t.antialias)
            img = F.center_crop(img, t.crop_size)
        return torch.from_numpy(np.array(img, dtype=np.uint8))

    def on_device(self, batch):
        """Batch of :meth:`on_cpu` tensors -> normalised float32 NCHW batch on the batch's device.

        When split, the NHWC uint8 batch is laid out as NCHW (a cheap copy of bytes, after which the
        per-channel arithmetic runs over whole planes, twice as fast as across interleaved
        channels) and scaled in place: ``x * (1 / (255 * std)) - mean / std`` is the transforms'
        ``(x / 255 - mean) / std`` up to float rounding, in two passes instead of four new tensors."""
        if not self.split:
            return batch
        import torch

        scale, shift = self._affine.get(batch.device, (None, None))
        if scale is None:
            mean = torch.tensor(self.transforms.mean, dtype=torch.float64).view(1, -1, 1, 1)
            std = torch.tensor(self.transforms.std, dtype=torch.float64).view(1, -1, 1, 1)
            scale = (1 / (255 * std)).float().to(batch.device)
            shift = (-mean / std).float().to(batch.device)
            self._affine[batch.device] = scale, shift
        x = batch.permute(0, 3, 1, 2).contiguous().to(torch.float32)
        return x.mul_(scale).add_(shift)

    def describe(self) -> str:
        """One-line description for the sidecar (the transforms' repr, plus antialias)."""
        text = report.one_line(repr(self.transforms))
        if self.split:
            text = text[:-1].rstrip() + " antialias=%s)" % self.transforms.antialias
        return text


class ImageFiles:
    """Dataset of image paths; item ``i`` is ``(i, tensor, None)`` or ``(i, None, reason)``, never raises."""

    def __init__(self, paths, preprocess):
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return i, self.preprocess.on_cpu(load_rgb(self.paths[i])), None
        except Exception as exc:  # expected bad input: reported by the main process, never raised
            return i, None, report.image_error_reason(exc)


def collate(items):
    """Batch the good items, pass the bad ones on: ``(indices, batch or None, [(index, reason)])``."""
    import torch

    good = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, reason) for i, t, reason in items if t is None]
    batch = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], batch, bad


# ---------------------------------------------------------------------------- planning

def plan(paths, out_dir, overwrite, dim, tally):
    """Split ``paths`` into the work list and what is skipped.

    Returns ``(todo, refused)``: the paths to embed, in order, and ``(path, reason)`` pairs for the
    caller to report. A path whose vector is complete in ``out_dir`` is counted in ``tally`` as
    "skipped existing" (unless ``overwrite``) and never opened. The same real file listed twice is
    taken once; a *different* file with the basename of an earlier one would write the same
    ``<basename>.npy``, so it is refused, naming the earlier path.
    """
    todo, refused, first = [], [], {}
    for path in paths:
        name = features.feature_name(path)
        real = os.path.realpath(path)
        if name in first:
            if first[name][1] != real:
                refused.append((path, "same basename as an earlier input: %s" %
                                printable(first[name][0])))
            continue
        first[name] = (path, real)
        if not overwrite and features.is_complete(os.path.join(out_dir, name), dim):
            tally.add("skipped existing")
        else:
            todo.append(path)
    return todo, refused


# ---------------------------------------------------------------------------- the run

def default_workers(device) -> int:
    """Decode processes: all cores feed a GPU; on CPU one process decodes while the rest infer."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    if device.type == "cpu":
        return 1 if cores <= 4 else max(1, cores // 4)
    return max(1, min(cores - 1, 16))


def default_batch_size(device) -> int:
    return 32 if device.type == "cpu" else 256


def run(paths, out_dir, model_name=DEFAULT_MODEL, batch_size=None, workers=None, device="auto",
        precision="auto", weights_path=None, overwrite=False, quiet=False, verbose=False) -> int:
    """Embed every image in ``paths`` into ``out_dir/<basename>.npy`` (float32, 1-D).

    Returns the exit status: 0 when done (bad inputs are counted, named and skipped), 1 when a
    vector could not be written, 130 when interrupted. Raises :class:`SetupError` before any work
    for an unknown model, an unavailable device, an unwritable folder, missing weights or a
    folder holding vectors of another model, weights or preprocessing.
    """
    stderr = sys.stderr

    def info(text, always=False):
        if always or not quiet:
            print("%s: %s" % (STAGE, text), file=stderr)

    if batch_size is not None and batch_size < 1:
        raise SetupError("--batch-size must be at least 1, not %d" % batch_size)
    if workers is not None and workers < 0:
        raise SetupError("--workers must be 0 (decode in the main process) or more, not %d" % workers)
    model_name = resolve_model_name(model_name)

    import torch

    dev = choose_device(device)
    prec = choose_precision(precision, dev)
    try:
        fsutil.check_writable_dir(out_dir)
    except OSError as exc:
        raise SetupError("cannot write to output folder %s: %s" % (out_dir, exc.strerror or exc))
    model, weights_info, transforms = load_model(model_name, weights_path)
    preprocess = Preprocess(transforms)
    head = classifier.Head(out_dir, model, last_linear(model)[1], preprocess.crop_size,
                           weight_categories(model_name))
    model, dim = feature_head(model)
    sidecar = dict(weights_info, model=model_name, preprocessing=preprocess.describe(),
                   precision=prec, dim=dim)
    try:
        old = features.read_sidecar(out_dir)
    except (OSError, ValueError) as exc:
        raise SetupError("cannot read %s in %s: %s (delete it only if the vectors there are yours to "
                         "redo)" % (features.SIDECAR, out_dir, report.one_line(exc)[:160]))
    if old is not None:
        clash = features.mismatch(old, sidecar)
        if clash:
            key, was, now = clash
            raise SetupError("%s holds vectors made with %s %s, not %s: use another output folder "
                             "(mixing them would make distances meaningless)" % (out_dir, key, was, now))
        if old.get("precision") not in (None, prec):
            sidecar["precision"] = ",".join(sorted(set(str(old["precision"]).split(",")) | {prec}))
            info("note: %s already holds %s vectors; adding %s ones" % (out_dir, old["precision"], prec))
    kept, note = head.keep(old)
    sidecar.update(kept)
    if note:
        info(note)
    features.write_sidecar(out_dir, sidecar)
    removed = fsutil.remove_stray_temps(out_dir)

    batch_size = batch_size or default_batch_size(dev)
    workers = default_workers(dev) if workers is None else workers
    tally = Tally(STAGE)
    todo, refused = plan(paths, out_dir, overwrite, dim, tally)
    # The decode workers start now, so they fill their queue while the network is prepared.
    batches = iter(_loader(todo, preprocess, batch_size, workers, dev))

    # ---- the network: BatchNorm folded, on the device in its fastest form here
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size: let cuDNN pick its fastest kernels
    net = Network(model, dev, prec, preprocess)
    threads = torch.get_num_threads()
    info("device %s%s, precision %s" % (
        dev, " (%d threads)" % threads if dev.type == "cpu" else "", net.describe()))
    if verbose:
        info("model %s (%s), %d-d features, %d BatchNorm layers folded; batch %d, %d decode "
             "workers, %d inference threads" % (model_name, weights_info.get("weights_file") or
                                                 weights_info["weights"], dim, net.folded,
                                                 batch_size, workers, threads))
    if removed:
        info("removed %d temporary files left by an interrupted run" % removed)
    for path, reason in refused:
        tally.fail(path, reason)
    if verbose:
        info("%d images to embed, %d already done" % (len(todo), tally.counts["skipped existing"]))

    # ---- the run
    from tqdm import tqdm

    status = 0
    bar = tqdm(total=len(todo), unit="img", file=stderr, disable=True if quiet else None,
               dynamic_ncols=True, smoothing=0.1)
    writer = ThreadPoolExecutor(max_workers=1 if dev.type == "cpu" else 4)
    pending = deque()  # batches computed or being computed, oldest first

    def finish(entry):
        idxs, out, event = entry
        if event is not None:
            event.synchronize()
        vectors = out.numpy()
        names = [os.path.join(out_dir, features.feature_name(todo[i])) for i in idxs]
        return writer.submit(_save_all, names, vectors), len(idxs)

    saving = deque()

    def drain(limit):
        while len(saving) > limit:
            future, n = saving.popleft()
            future.result()  # an OSError here (disk full...) ends the run
            tally.add("embedded", n)
            bar.update(n)

    try:
        with torch.inference_mode():
            for idxs, batch, bad in batches:
                for i, reason in bad:
                    tally.fail(todo[i], reason, progress=None if bar.disable else bar)
                bar.update(len(bad))
                if batch is not None:
                    y = net(batch)
                    # Asynchronous on CUDA (into pinned memory); the copy is waited for one batch
                    # later, so the GPU computes batch n+1 while batch n is written out.
                    out = y.to("cpu", non_blocking=dev.type == "cuda")
                    event = None
                    if dev.type == "cuda":
                        event = torch.cuda.Event()
                        event.record()
                    pending.append((idxs, out, event))
                while len(pending) > (1 if dev.type == "cuda" else 0):
                    saving.append(finish(pending.popleft()))
                drain(2)
            while pending:
                saving.append(finish(pending.popleft()))
            drain(0)
    except KeyboardInterrupt:
        bar.close()
        info("interrupted: every vector written so far is complete; run again to resume", always=True)
        status = 130
    except OSError as exc:
        bar.close()
        print("error: cannot write vectors to %s: %s" % (out_dir, exc.strerror or exc), file=stderr)
        status = 1
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if not quiet:
        print(tally.summary(["embedded", "skipped existing"], "embedded"), file=stderr)
    return status


def _save_all(names, vectors):
    for name, vec in zip(names, vectors):
        features.save_vector(name, vec)


def _loader(todo, preprocess, batch_size, workers, dev):
    """The DataLoader over ``todo``: ``(indices, uint8 batch or None, [(index, reason)])`` batches."""
    from torch.utils.data import DataLoader

    prefetch = None
    if workers:
        # Batches queued per worker. On CPU, enough for ~400 images (~60 MB): the workers keep
        # decoding while the main process prepares the network, instead of stopping after a few.
        prefetch = 4 if dev.type != "cpu" else max(4, -(-400 // (batch_size * workers)))
    return DataLoader(ImageFiles(todo, preprocess), batch_size=batch_size, shuffle=False,
                      num_workers=workers, collate_fn=collate, pin_memory=dev.type == "cuda",
                      prefetch_factor=prefetch, persistent_workers=False)
