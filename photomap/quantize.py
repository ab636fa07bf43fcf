"""int8 on x86 CPUs: the feature extractor quantized after training, calibrated once per feature
folder on the user's own images, checked against fp32, and its parameters kept in ``int8.json``.

Which quantization path, and why (tried on a 2-core AVX2 EPYC with torch 2.14.1, resnet18):

* **torch.ao's FX graph mode** (``prepare_fx`` / ``convert_fx``, taken here) runs eager with
  torch's own int8 kernels (fbgemm / oneDNN): no compiler and no export,
  about a second or two of graph work per start, a forward pass about twice as fast as fp32, and
  vectors at cosine >= 0.998 to fp32 on photo-like thumbnails. Its API is the same in every torch
  this project supports (>= 2.2); it warns that it is deprecated ("will be removed in 2.10"), yet
  2.14.1 still ships it.
* **PT2E** (``prepare_pt2e`` / ``convert_pt2e`` with ``X86InductorQuantizer``), the announced
  successor, is no longer in torch 2.14 (it moved to torchao, whose releases each follow a few
  torch versions). With torchao 0.18 here: importing it took 9-11 s; the default export of
  resnet18 failed to annotate ("Input partition has more than one output node"); a strict export
  took 12 s and lowering without ``torch.compile`` 30 s, for a graph that ran at 5 images/s on
  the (busy) machine; with ``torch.compile`` it needs a C++ compiler and tens of seconds at every
  start. That is no path for a laptop run over a few thousand photos.

So this module uses FX, keeps every use of it here behind a small interface (``unavailable``,
``build``), and where a future torch lacks it, int8 falls back to fp32 with one line saying so.

The file ``int8.json`` (written and read only here) records what makes the quantized network
reproducible: the folder's model identity, the engine, the per-tensor scale and zero point of every
activation observer, the number of calibration images and the minimum cosine to fp32 measured on
them, which each run judges against the bar, and ``float_pool`` (whether the final pooling runs on
dequantized values: true for every calibration since it was added; a file without it is rebuilt as it
was calibrated, pooling in int8, so that its folder's vectors stay the same). Weights are quantized
per channel from the weights themselves, so they need no record.
A resumed run, a run adding photos and every worker of a cluster build the same network from it:
int8 arithmetic accumulates in integers, so each vector is the same, byte for byte, whatever batch
it is computed in.
"""
import json
import os
import platform
import time
import warnings

from . import fsutil, report

PARAMS = "int8.json"
FORMAT = "photomap-int8-params"
FORMAT_VERSION = 1
# The fidelity bar: int8 is used only where every calibration image's vector is at least this
# close (cosine similarity) to its fp32 vector. resnet18 and regnet_x_400mf gave 0.998-0.9998
# here; models whose int8 output collapses (random-init mobilenet_v3, efficientnet_b0 and
# googlenet gave cosine 0.0) are what it stops.
MIN_COSINE = 0.99
# Calibration images, taken evenly across the run's inputs (a backup is in folder order: the first
# photos are often one day's pictures). 32 images of 224 px give each observer millions of values;
# on photo-like thumbnails, calibrating on 16, 32 or 64 gave the same held-out minimum cosine
# (0.9980, 0.9980, 0.9981), while each image adds about two fp32 forward passes to the start-up.
CALIBRATION_IMAGES = 32
BATCH = 32
# Engines in the order tried. oneDNN's int8 kernels ran resnet18's forward pass at 63-65 images/s on
# the 2-core AVX2 EPYC against 53-55 for the "x86" engine (fbgemm's kernels on a CPU without VNNI;
# on CPUs with VNNI "x86" itself picks oneDNN's convolutions), batches of 16-64, three interleaved
# rounds on a quiet machine; its qconfig keeps all 8 bits of each activation (x86's keeps 7), and
# the min cosine to fp32 was 0.99988 against 0.99978. "x86", then plain fbgemm (older torch), where
# a torch lacks oneDNN. A folder's int8.json names the engine it was calibrated for, which it keeps.
# torch warns that oneDNN's 8-bit activations "may have accuracy issues" on CPUs without VNNI (their
# int16 sums can saturate); measured on that CPU, 7-bit activations on oneDNN moved pairwise distances
# more (1.86e-4 against 1.45e-4, median, 200 thumbnails) at the same speed, and the MIN_COSINE check
# runs fp32 wherever saturation would show.
ENGINES = ("onednn", "x86", "fbgemm")


def unavailable():
    """None when this CPU and torch can run int8 here, else why not (a short phrase)."""
    import torch

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "int8 needs an x86 CPU (this one is %s)" % (platform.machine() or "unknown")
    if engine() is None:
        return "this torch has no x86 int8 engine"
    try:
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx  # noqa: F401
    except ImportError:
        return "this torch (%s) has no torch.ao FX quantization" % torch.__version__
    return None


def engine():
    """The quantized engine a new calibration uses here (the first of :data:`ENGINES` this torch
    has), or None."""
    import torch

    supported = torch.backends.quantized.supported_engines
    return next((e for e in ENGINES if e in supported), None)


def sample_indices(n, count=CALIBRATION_IMAGES):
    """``count`` indices spread evenly over ``range(n)`` (all of them when ``n <= count``)."""
    if n <= count:
        return list(range(n))
    return [i * n // count for i in range(count)]


# ---------------------------------------------------------------------------- the params file

def read_params(out_dir, identity):
    """The params stored in ``out_dir`` for a network of ``identity`` (a dict of the sidecar's
    identity keys). Returns ``(params, problem)``: ``(dict, None)`` when usable, ``(None, None)``
    when there is no file, ``(None, reason)`` when the file is corrupt or made for something else."""
    path = os.path.join(out_dir, PARAMS)
    try:
        with open(path, encoding="utf-8") as f:
            params = json.load(f)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, "unreadable (%s)" % report.one_line(exc)[:80]
    if not isinstance(params, dict) or params.get("format") != FORMAT:
        return None, "not a photomap int8 file"
    if params.get("format_version", 0) > FORMAT_VERSION:
        return None, "written by a newer photomap (format %s)" % params.get("format_version")
    for key, value in identity.items():
        if params.get(key) != value:
            return None, "made for %s %s, not %s" % (key, params.get(key), value)
    try:
        for name, q in params["activations"].items():
            float(q["scale"]), int(q["zero_point"]), int(q["quant_min"]), int(q["quant_max"])
            if q["dtype"] not in ("quint8", "qint8"):
                raise ValueError(name)
        float(params["min_cosine"]), int(params["calibration_images"])
        if not isinstance(params.get("float_pool", False), bool):
            raise ValueError("float_pool")
    except (KeyError, TypeError, ValueError, AttributeError):
        return None, "incomplete"
    return params, None


def write_params(out_dir, params, replace=False):
    """Store ``params`` in ``out_dir``; returns the params now in place.

    Without ``replace`` the first writer wins: when another run (a cluster worker) stored its own
    meanwhile, that one is returned, so every run of the folder uses the same network. With
    ``replace`` (the file there was corrupt or foreign) it is overwritten."""
    data = (json.dumps(dict(params, format=FORMAT, format_version=FORMAT_VERSION), indent=1,
                       sort_keys=True) + "\n").encode("utf-8")
    path = os.path.join(out_dir, PARAMS)
    if replace:
        with fsutil.atomic_write(path) as f:
            f.write(data)
        return params
    if fsutil.write_once(path, data):
        return params
    stored, _ = read_params(out_dir, {})
    return stored or params


# ---------------------------------------------------------------------------- FX quantization

def _prepare(model, example, eng):
    """``model`` with FX's observers inserted for engine ``eng``; raises when FX cannot take it."""
    import copy

    import torch.fx
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    # FX's quantization tracer records a stack trace per node, and filtering those first imports
    # torch.export and inductor (4.6 s of a 7.8 s prepare_fx, profiled on a busy 2-core machine),
    # for debugging text nobody reads.
    config = getattr(torch.fx, "config", None)
    saved = getattr(config, "do_not_emit_stack_traces", None)
    if saved is not None:
        config.do_not_emit_stack_traces = True
    try:
        return prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping(eng), (example,))
    finally:
        if saved is not None:
            config.do_not_emit_stack_traces = saved


def _activation_observers(prepared):
    """``{name: observer}`` of the activation observers FX inserted (per-tensor ones only)."""
    return {name: module for name, module in prepared.named_children()
            if name.startswith("activation_post_process")}


def _record(observer):
    """An activation observer's calibrated qparams as a JSON-ready dict; raises for any but
    per-tensor int8 ones."""
    import torch

    scale, zero_point = observer.calculate_qparams()
    if scale.numel() != 1 or observer.dtype not in (torch.quint8, torch.qint8):
        raise ValueError("observer is not per-tensor int8")
    return {"scale": float(scale.reshape(-1)[0]), "zero_point": int(zero_point.reshape(-1)[0]),
            "dtype": str(observer.dtype).replace("torch.", ""),
            "quant_min": int(observer.quant_min), "quant_max": int(observer.quant_max)}


def _convert(prepared, activations, float_pool=True):
    """The int8 network from a prepared model whose observers take the stored ``activations``; with
    ``float_pool``, its final pooling runs on the dequantized activations (:func:`_float_pool`)."""
    import torch
    from torch.ao.quantization.observer import FixedQParamsObserver
    from torch.ao.quantization.quantize_fx import convert_fx

    observers = _activation_observers(prepared)
    if set(observers) != set(activations):
        raise KeyError("the stored observers are not this network's")
    for name, q in activations.items():
        setattr(prepared, name, FixedQParamsObserver(
            q["scale"], q["zero_point"], dtype=getattr(torch, q["dtype"]),
            quant_min=q["quant_min"], quant_max=q["quant_max"]))
    converted = convert_fx(prepared)
    return _float_pool(converted) if float_pool else converted


# Between a pooling step and the output, only these leave values as they are (a reshape, a dropout or
# identity in eval mode, the final dequantize).
_PASS_METHODS = {"flatten", "view", "reshape", "squeeze", "dequantize", "contiguous"}
_PASS_MODULES = ("Identity", "Flatten", "Dropout")
_POOL_MODULES = ("AdaptiveAvgPool2d", "AvgPool2d", "AdaptiveAvgPool1d", "AvgPool1d")


def _float_pool(gm):
    """``gm`` (a converted GraphModule) with the input of each final average pooling dequantized.

    FX runs the pooling on the quantized tensor and keeps the activation's scale for its output: the
    mean of resnet18's 7x7 last activations then takes one of a dozen values per dimension, which
    is most of int8's difference from fp32 in the feature vector. Pooled in float instead, the
    vector takes ~180 values per dimension; the median cosine to fp32 rose from 0.99984 to 0.99990
    and pairwise distances moved a third less (200 photo-like thumbnails), for no measurable time.
    Only a pooling whose result reaches the output through reshapes alone is changed: a pooling
    inside the network feeds int8 layers that need it quantized."""
    import torch.fx

    def modname(node):
        return type(gm.get_submodule(node.target)).__name__ if node.op == "call_module" else None

    def only_reshaped(node):
        for user in node.users:
            if user.op == "output":
                continue
            ok = ((user.op == "call_method" and user.target in _PASS_METHODS) or
                  (user.op == "call_function" and getattr(user.target, "__name__", "") in _PASS_METHODS) or
                  modname(user) in _PASS_MODULES)
            if not ok or not only_reshaped(user):
                return False
        return True

    graph = gm.graph
    changed = False
    for node in list(graph.nodes):
        if modname(node) in _POOL_MODULES and node.args and isinstance(node.args[0], torch.fx.Node) \
                and only_reshaped(node):
            with graph.inserting_before(node):
                plain = graph.call_method("dequantize", (node.args[0],))
            node.replace_input_with(node.args[0], plain)
            changed = True
    if changed:
        graph.lint()
        gm.recompile()
    return gm


def _forward(model, batches):
    """``model``'s outputs for normalised float ``batches`` (channels_last), concatenated."""
    import torch

    with torch.inference_mode():
        return torch.cat([model(b.contiguous(memory_format=torch.channels_last)) for b in batches])


def min_cosine(a, b) -> float:
    """The smallest row-wise cosine similarity between two (N, D) tensors."""
    import torch

    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1).min().item()


def calibrate(model, batches, eng, seconds):
    """Calibrate ``model`` (fp32, BatchNorm folded) on normalised float ``batches`` for engine
    ``eng``. Returns ``(activations, int8_model, fp32_vectors, int8_vectors)`` and adds the
    seconds spent to ``seconds["quantization"]`` (FX's graph work) and ``["calibration"]`` (the
    forward passes); raises when FX cannot quantize this model."""
    clock = [time.perf_counter()]

    def lap(step):
        now = time.perf_counter()
        seconds[step] = seconds.get(step, 0.0) + now - clock[0]
        clock[0] = now

    prepared = _prepare(model, batches[0][:1], eng)
    lap("quantization")
    want = _forward(prepared, batches)  # observers pass values through: these are fp32 vectors
    activations = {name: _record(obs) for name, obs in _activation_observers(prepared).items()}
    lap("calibration")
    quantized = _convert(prepared, activations)
    lap("quantization")
    got = _forward(quantized, batches)
    lap("calibration")
    return activations, quantized, want, got


class Outcome:
    """What :func:`build` decided: ``model`` (the int8 network, or None for fp32), ``why`` (a short
    phrase for the log), ``fallback`` (True when int8 was asked for and fp32 runs), ``params``
    (the stored dict, or None) and ``seconds``: ``{"calibration": s, "quantization": s}``, the
    time spent decoding the sample and running it in fp32 and int8, and FX's graph work."""

    def __init__(self, model, why, fallback, params=None, seconds=None):
        self.model, self.why, self.fallback = model, why, fallback
        self.params, self.seconds = params, seconds or {}


def build(model, example, out_dir, identity, sample, bar=None, log=None):
    """The int8 form of ``model`` (fp32, eval, BatchNorm folded) for feature folder ``out_dir``.

    ``example``: one normalised input (1, C, H, W). ``identity``: the sidecar identity keys of the
    run. ``sample()``: called only when the folder has no usable params, returns the calibration
    images as a list of normalised float batches (possibly empty). ``bar``: the minimum cosine to
    fp32 (default :data:`MIN_COSINE`). ``log(line)``: for the one line said when a stored file is
    unusable. Returns an :class:`Outcome`; never raises for a model FX cannot quantize.
    """
    bar = MIN_COSINE if bar is None else bar
    why_not = unavailable()
    if why_not:
        return Outcome(None, why_not, True)
    import torch

    stored, problem = read_params(out_dir, identity)
    if problem and log:
        log("%s in %s is %s: calibrating again" % (PARAMS, out_dir, problem))
    # torch.ao warns that FX quantization and quantized tensors are deprecated (see above).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if stored is not None:
            return _from_stored(model, example, stored, bar)
        return _calibrated(model, out_dir, identity, sample, bar, replace=problem is not None)


def _verdict(params, bar, seconds):
    """The Outcome for ``params`` judged against ``bar`` (without the int8 model)."""
    cos, n = params["min_cosine"], params["calibration_images"]
    if cos >= bar:
        return Outcome(None, "min cosine %.4f to fp32 on %d images" % (cos, n), False, params, seconds)
    return Outcome(None, "int8 kept min cosine %.4f to fp32 on %d images, below %.2f" % (cos, n, bar),
                   True, params, seconds)


def _from_stored(model, example, params, bar):
    """The Outcome from the folder's stored ``params``: the int8 network rebuilt from them, or
    fp32 when their measured cosine is below ``bar`` or they no longer fit this torch."""
    import torch

    outcome = _verdict(params, bar, {})
    if outcome.fallback:
        return outcome
    eng = params["engine"]
    if eng not in torch.backends.quantized.supported_engines:
        return Outcome(None, "%s was made for the %s engine, which this torch lacks" % (PARAMS, eng),
                       True, params)
    start = time.perf_counter()
    torch.backends.quantized.engine = eng
    try:
        outcome.model = _convert(_prepare(model, example, eng), params["activations"],
                                 float_pool=params.get("float_pool", False))
        _forward(outcome.model, [example])  # runs it once: torch's once-only warnings fire here
    except Exception as exc:  # torch changed how FX names observers: say so, run fp32
        return Outcome(None, "the stored %s does not fit this torch (%s)" % (
            PARAMS, report.one_line(exc)[:80]), True, params)
    outcome.seconds["quantization"] = time.perf_counter() - start
    outcome.why += " (stored)"
    return outcome


def _calibrated(model, out_dir, identity, sample, bar, replace):
    """The Outcome of calibrating ``model`` on ``sample()`` and checking it against fp32; the
    params are stored in ``out_dir`` first (``replace``: over a corrupt or foreign file)."""
    import torch

    eng = engine()
    start = time.perf_counter()
    batches = sample()
    seconds = {"calibration": time.perf_counter() - start}
    if not batches:
        return Outcome(None, "no readable image to calibrate int8 on", True)
    torch.backends.quantized.engine = eng
    try:
        activations, quantized, want, got = calibrate(model, batches, eng, seconds)
    except Exception as exc:  # FX cannot trace or quantize this model: fp32 it is
        return Outcome(None, "this model cannot be quantized by torch.fx (%s)" % (
            report.one_line("%s: %s" % (type(exc).__name__, exc))[:100]), True)
    params = dict(identity, engine=eng, torch=torch.__version__, activations=activations, float_pool=True,
                  calibration_images=int(want.shape[0]), min_cosine=round(min_cosine(got, want), 6))
    stored = write_params(out_dir, params, replace=replace)
    if stored is not params:  # another run of this folder calibrated first: use its parameters
        return _from_stored(model, batches[0][:1], stored, bar)
    outcome = _verdict(params, bar, seconds)
    if not outcome.fallback:
        outcome.model = quantized
    return outcome
