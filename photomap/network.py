"""Stage 2's network: the device, the precision, and the form the model runs in there (BatchNorm
folded; on CPUs with native bf16 on oneDNN's own layout, on other x86 CPUs int8 (:mod:`photomap.quantize`),
elsewhere channels_last under autocast)."""
from . import quantize
from .report import SetupError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


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
    """``fp32``, ``bf16``, ``fp16`` or ``int8`` for ``--precision`` on ``device`` (int8 is then
    confirmed or turned into fp32 by :meth:`Network.quantize`).

    auto: on CUDA bf16 where supported, else fp16; on MPS fp16; on CPU bf16 only where the CPU
    has native bf16 (elsewhere bf16 is emulated and slower than fp32), else int8 on x86 CPUs,
    else fp32.
    """
    import torch

    if requested not in PRECISIONS:
        raise SetupError("--precision must be one of %s, not %r" % ("|".join(PRECISIONS), requested))
    if requested == "int8" and device.type != "cpu":
        raise SetupError("--precision int8 runs on the CPU only; use --device cpu, or fp16/bf16 on "
                         "the %s" % device.type)
    if requested != "auto":
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise SetupError("--precision bf16: this GPU has no bf16; use fp16 or fp32")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "fp16"
    if cpu_has_native_bf16():
        return "bf16"
    return "int8" if quantize.unavailable() is None else "fp32"


def precision_reason(requested: str, precision: str, device) -> str:
    """Why ``--precision auto`` chose ``precision`` on a CPU, for the log ("" otherwise)."""
    if requested != "auto" or device.type != "cpu":
        return ""
    if precision == "bf16":
        return "auto: this CPU has native bf16"
    why_not = quantize.unavailable() if precision == "fp32" else None
    return "auto: no native bf16 on this CPU" + ("; " + why_not if why_not else "")


def autocast(device, precision):
    """The autocast context for ``precision`` on ``device`` (none for fp32 and int8, whose
    networks take and give float32 themselves)."""
    import contextlib

    import torch

    if precision in ("fp32", "int8"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


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
    """The feature extractor on its device: batches from :class:`photomap.decode.Preprocess` in, float32
    vectors out.

    BatchNorm is folded into the convolutions. On CPU in bf16, models that oneDNN's layout supports
    run there (:func:`onednn_model`); in int8, the network :meth:`quantize` makes; everything else
    runs eager in channels_last under autocast (bf16/fp16) or in fp32.
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
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # one input size: let cuDNN pick its fastest kernels
        self.int8 = None  # the quantize.Outcome, once quantize() ran

    def quantize(self, out_dir, identity, paths, bar=None, log=None):
        """Swap in the int8 network of feature folder ``out_dir``: from its stored parameters, else
        calibrated on an even sample of the image ``paths`` and checked against this fp32 network
        (see :mod:`photomap.quantize`). ``identity``: the sidecar's identity keys. Falls back to
        fp32 when the check fails or the model cannot be quantized. Returns the ``quantize.Outcome``."""
        import torch

        from .decode import collate, decode

        def sample():
            picked = [paths[i] for i in quantize.sample_indices(len(paths))]
            batch = collate([(i,) + decode(p, self.preprocess) for i, p in enumerate(picked)])[1]
            if batch is None:
                return []
            return [self.preprocess.on_device(b) for b in batch.split(quantize.BATCH)]

        example = torch.zeros((1, 3) + tuple(self.preprocess.crop_size))
        self.int8 = quantize.build(self.model, example, out_dir, identity, sample, bar, log)
        if self.int8.model is not None:
            self.model = self.int8.model
        else:
            self.precision = "fp32"
        return self.int8

    def describe(self, why="") -> str:
        """How the network runs, for the log: ``bf16 (oneDNN layout)``, ``fp16 autocast``,
        ``int8 (onednn engine, min cosine ...)``, ``fp32``; ``why`` is added in the brackets."""
        text, details = self.precision, []
        if self.onednn is not None:
            details.append("oneDNN layout")
        elif self.int8 is not None and self.int8.model is not None:
            details.append("%s engine, %s" % (self.int8.params["engine"], self.int8.why))
        elif self.precision not in ("fp32", "int8"):
            text += " autocast"
        if self.int8 is not None and self.int8.fallback:
            details.append(self.int8.why)
        details += [why] if why else []
        return text + (" (%s)" % "; ".join(details) if details else "")

    def __call__(self, batch):
        """Features of ``batch`` (on any device): float32 (N, dim) on the network's device."""
        import torch

        x = self.preprocess.on_device(batch.to(self.device, non_blocking=True))
        if self.onednn is not None:
            return self.onednn(x.to(torch.bfloat16).to_mkldnn()).to_dense().float()
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            return self.model(x).float()


def default_batch_size(device) -> int:
    """Images per forward pass: 32 on CPU (no consistent gain from 16 or 64 there), 256 on a GPU."""
    return 32 if device.type == "cpu" else 256
