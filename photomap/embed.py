"""Stage 2's run: image paths in, one penultimate-layer feature vector per image out, into a feature folder.

DataLoader worker processes decode (:mod:`photomap.decode`) while the main process prepares the
:class:`~photomap.network.Network` (:mod:`photomap.network`) from the model and weights
(:mod:`photomap.model`); the main process then runs each batch through it and a
:class:`VectorWriter` saves the vectors through :mod:`photomap.features`.
"""
import os
import time
from collections import deque

from . import classifier, features, quantize
from .decode import Preprocess, collate, decode, default_workers, loader
from .model import DEFAULT_MODEL, feature_head, last_linear, load_model, resolve_model_name, weight_categories
from .network import Network, choose_device, choose_precision, default_batch_size, precision_reason
from .report import SetupError, one_line, printable
from .runner import Run

STAGE = "embeddings"


def run(paths, out_dir, model_name=DEFAULT_MODEL, batch_size=None, workers=None, device="auto",
        precision="auto", weights_path=None, overwrite=False, quiet=False, verbose=False,
        scheduler=None) -> int:
    """Embed every image in ``paths`` into ``out_dir/<basename>.npy`` (float32, 1-D).

    Returns the exit status: 0 when done (bad inputs are counted, named and skipped), 1 when a
    vector could not be written, 130 when interrupted. Raises :class:`SetupError` before any work
    for an unknown model, an unavailable device, an unwritable folder, missing weights or a
    folder holding vectors of another model, weights or preprocessing, or a Dask ``scheduler``
    that cannot be reached. With ``scheduler``, that cluster's workers embed chunks of the paths
    (:mod:`photomap.cluster`), each with ``device`` and ``precision`` as given.
    """
    r = Run(STAGE, quiet)
    check_options(batch_size, workers)
    clock = {"start": time.perf_counter()}
    client = None
    if scheduler is not None:
        from . import cluster
        client = cluster.connect(scheduler)
    model_name = resolve_model_name(model_name)
    dev = choose_device(device)
    prec = choose_precision(precision, dev)
    if client is not None and prec == "int8":
        if precision != "auto":
            raise SetupError("--precision int8 is not available with --scheduler (its calibration "
                             "runs on one machine): use fp32, bf16 or fp16")
        precision = prec = "fp32"  # auto on a cluster: the workers run what the sidecar records
    clock["imports"] = time.perf_counter()
    r.check_output(out_dir, "output folder")
    model, weights_info, transforms = load_model(model_name, weights_path)
    clock["weights"] = time.perf_counter()
    preprocess = Preprocess(transforms)
    head = classifier.Head(out_dir, model, last_linear(model)[1], preprocess.crop_size,
                           weight_categories(model_name))  # taken before feature_head removes it
    model, dim = feature_head(model)
    sidecar = dict(weights_info, model=model_name, dim=dim, precision=prec,
                   preprocessing=preprocess.describe())
    old = open_output(r, out_dir, sidecar)
    keep_classifier(r, head, old, sidecar)

    batch_size = batch_size or default_batch_size(dev)
    workers = default_workers(dev) if workers is None else workers
    todo, refused = plan(paths, out_dir, overwrite, dim, r.tally)
    if client is not None:
        record_precision(r, out_dir, sidecar, old, prec, bool(todo))  # the workers run ``prec``
        for path, reason in refused:
            r.fail(path, reason)
        options = (model_name, weights_path and os.path.abspath(weights_path), device, precision)
        status = embed_on_cluster(r, cluster.embed_all(client, todo, out_dir, options, batch_size),
                                  len(todo), out_dir, cluster.Lost)
        r.summary(["embedded", "skipped existing"], "embedded")
        return status
    # The decode workers start now, so they fill their queue while the network is prepared.
    batches = iter(loader(todo, preprocess, batch_size, workers, dev))
    net = Network(model, dev, prec, preprocess)
    if prec == "int8":
        identity = {key: sidecar[key] for key in features.IDENTITY_KEYS}
        net.quantize(out_dir, identity, todo, log=r.info)
    clock["network"] = time.perf_counter()
    say_setup(r, net, sidecar, batch_size, workers, verbose, precision_reason(precision, prec, dev),
              always=bool(todo) and net.int8 is not None and net.int8.fallback)
    record_precision(r, out_dir, sidecar, old, net.precision, bool(todo))
    if verbose:
        say_start_up(r, clock, net)
    for path, reason in refused:
        r.fail(path, reason)
    if verbose:
        r.info("%d images to embed, %d already done" % (len(todo), r.tally.counts["skipped existing"]))

    status = embed_batches(r, batches, net, todo, out_dir)
    r.summary(["embedded", "skipped existing"], "embedded")
    return status


def check_options(batch_size, workers) -> None:
    """Raise :class:`SetupError` for a batch size below 1 or a negative number of workers."""
    if batch_size is not None and batch_size < 1:
        raise SetupError("--batch-size must be at least 1, not %d" % batch_size)
    if workers is not None and workers < 0:
        raise SetupError("--workers must be 0 (decode in the main process) or more, not %d" % workers)


def open_output(r, out_dir, sidecar: dict):
    """Check ``out_dir``'s sidecar against ``sidecar`` (what makes the vectors) and remove stray
    temporary files; returns the folder's sidecar (None in a new folder).

    Raises :class:`SetupError`, having written nothing, when the folder's sidecar cannot be read or
    names another model, weights, preprocessing or dimension.
    """
    try:
        old = features.read_sidecar(out_dir)
    except (OSError, ValueError) as exc:
        raise SetupError("cannot read %s in %s: %s (delete it only if the vectors there are yours to "
                         "redo)" % (features.SIDECAR, out_dir, one_line(exc)[:160]))
    if old is not None:
        clash = features.mismatch(old, sidecar)
        if clash:
            key, was, now = clash
            raise SetupError("%s holds vectors made with %s %s, not %s: use another output folder "
                             "(mixing them would make distances meaningless)" % (out_dir, key, was, now))
    r.clean_output(out_dir)
    return old


def keep_classifier(r, head, old, sidecar: dict) -> None:
    """Write the folder's ``classifier.npz`` when it lacks one (:class:`~photomap.classifier.Head`),
    note it in ``sidecar`` (features.json, written later), and say once when the model has none."""
    kept, note = head.keep(old)
    sidecar.update(kept)
    if note:
        r.info(note)


def record_precision(r, out_dir, sidecar: dict, old, precision: str, adding: bool) -> None:
    """Write ``sidecar`` into ``out_dir`` with the ``precision`` the network runs in. Where the
    folder (``old``, its sidecar) holds vectors of another precision and this run is ``adding``
    some, both are recorded (``bf16,fp32``), with a note: bf16 stays within cosine 0.999 of fp32,
    and int8 runs only where it stays within quantize.MIN_COSINE (its measured figure is named)."""
    sidecar["precision"] = precision
    if old is not None and old.get("precision") not in (None, precision):
        if adding:
            sidecar["precision"] = ",".join(sorted(set(str(old["precision"]).split(",")) | {precision}))
            measured = quantize_note(out_dir) if "int8" in sidecar["precision"] else ""
            r.info("note: %s already holds %s vectors; adding %s ones%s" % (
                out_dir, old["precision"], precision, measured))
        else:  # nothing is embedded now: the folder's vectors are as they were
            sidecar["precision"] = old["precision"]
    features.write_sidecar(out_dir, sidecar)


def quantize_note(out_dir) -> str:
    """`` (int8 within cosine X of fp32)`` from the folder's int8.json, or ""."""
    params, _ = quantize.read_params(out_dir, {})
    return " (int8 within cosine %.4f of fp32)" % params["min_cosine"] if params else ""


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


def say_setup(r, net, sidecar, batch_size, workers, verbose, why="", always=False) -> None:
    """The device line, with ``why`` the precision was chosen (shown even when quiet if
    ``always``: int8 fell back); with ``verbose`` also the model, weights, batch and threads."""
    import torch

    threads = torch.get_num_threads()
    dev = net.device
    r.info("device %s%s, precision %s" % (
        dev, " (%d threads)" % threads if dev.type == "cpu" else "", net.describe(why)), always=always)
    if verbose:
        r.info("model %s (%s), %d-d features, %d BatchNorm layers folded; batch %d, %d decode "
               "workers, %d inference threads" % (
                   sidecar["model"], sidecar.get("weights_file") or sidecar["weights"],
                   sidecar["dim"], net.folded, batch_size, workers, threads))


def say_start_up(r, clock, net) -> None:
    """One line of the fixed costs before the first batch: imports, weights, the network's
    preparation, and int8's calibration and quantization (for bench/bench_embeddings.py)."""
    steps = {"imports": clock["imports"] - clock["start"],
             "weights": clock["weights"] - clock["imports"],
             "set-up": clock["network"] - clock["weights"]}
    for step, seconds in (net.int8.seconds if net.int8 else {}).items():
        steps["set-up"] -= seconds
        steps["int8 " + step] = seconds
    r.info("start-up: " + ", ".join("%s %.2fs" % kv for kv in steps.items()))


def embed_batches(r, batches, net, todo, out_dir) -> int:
    """Run ``net`` over the loader's ``batches`` of ``todo`` and write each vector into ``out_dir``;
    each bad image is named in one line and counted. Returns 0, or 130 when interrupted, or 1
    when a vector could not be written (said in one ``error:`` line)."""
    import torch

    bar = r.progress(len(todo), smoothing=0.1)
    try:
        with VectorWriter(net.device) as writer, torch.inference_mode():
            for idxs, batch, bad in batches:
                for i, reason in bad:
                    r.fail(todo[i], reason)
                bar.update(len(bad))
                if batch is not None:
                    paths = [vector_path(out_dir, todo[i]) for i in idxs]
                    count_saved(r, writer.put(paths, net(batch)))
            count_saved(r, writer.finish())
    except KeyboardInterrupt:
        r.close()
        r.info("interrupted: every vector written so far is complete; run again to resume", always=True)
        return 130
    except OSError as exc:
        r.error("cannot write vectors to %s: %s" % (out_dir, exc.strerror or exc))
        return 1
    return 0


def embed_on_cluster(r, chunks, total, out_dir, lost) -> int:
    """Count and report the ``(number of paths, bad (path, reason) pairs)`` of each chunk embedded on a
    cluster as it comes in. Returns 0, 130 when interrupted, or 1 when the cluster was ``lost``."""
    bar = r.progress(total, smoothing=0.1)
    try:
        for n, bad in chunks:
            for path, reason in bad:
                r.fail(path, reason)
            bar.update(len(bad))
            count_saved(r, n - len(bad))
    except KeyboardInterrupt:
        r.close()
        r.info("interrupted: every vector written so far is complete; run again to resume", always=True)
        return 130
    except lost as exc:
        r.error("%s (every vector written so far is complete; run again to resume)" % exc)
        return 1
    finally:
        chunks.close()
    return 0


def count_saved(r, n) -> None:
    """Count ``n`` more vectors as embedded, on the bar and for the summary."""
    r.tally.add("embedded", n)
    r.bar.update(n)


class VectorWriter:
    """Batches of vectors from the network's device to their ``.npy`` files, overlapped with the
    network's work on the next batches.

    On CUDA each batch is copied back asynchronously (into pinned memory) and waited for one
    batch later, so the GPU computes batch n+1 while batch n is copied and written. Writer threads
    (one on CPU, four on a GPU) save; at most two batches wait for them. :meth:`put` and
    :meth:`finish` return how many vectors became complete on disk since the last call, and raise
    the ``OSError`` of a failed write (disk full...).
    """

    def __init__(self, device):
        from concurrent.futures import ThreadPoolExecutor

        self.cuda = device.type == "cuda"
        self.copying = deque()  # (paths, vectors on the host or on their way, CUDA event), oldest first
        self.saving = deque()  # (future, number of vectors), oldest first
        self.threads = ThreadPoolExecutor(max_workers=1 if device.type == "cpu" else 4)

    def put(self, paths, vectors) -> int:
        """Hand over ``vectors`` (N, dim) of one batch, to be saved at ``paths``."""
        import torch

        event = None
        host = vectors.to("cpu", non_blocking=self.cuda)
        if self.cuda:
            event = torch.cuda.Event()
            event.record()
        self.copying.append((paths, host, event))
        return self._advance(copying=1 if self.cuda else 0, saving=2)

    def finish(self) -> int:
        """Wait until every vector handed over is on disk."""
        return self._advance(copying=0, saving=0)

    def _advance(self, copying, saving) -> int:
        """Start saving the batches whose copy is due (all but ``copying``), then wait for the
        saves beyond the last ``saving``; returns the number of vectors saved."""
        while len(self.copying) > copying:
            paths, host, event = self.copying.popleft()
            if event is not None:
                event.synchronize()
            self.saving.append((self.threads.submit(save_vectors, paths, host.numpy()), len(paths)))
        done = 0
        while len(self.saving) > saving:
            future, n = self.saving.popleft()
            future.result()
            done += n
        return done

    def close(self) -> None:
        """Stop the writer threads after the save under way; saves not started are dropped."""
        self.threads.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def vector_path(out_dir, path) -> str:
    """Where the vector of input ``path`` goes in ``out_dir``."""
    return os.path.join(out_dir, features.feature_name(path))


def save_vectors(paths, vectors) -> None:
    """Save each row of ``vectors`` at the matching path of ``paths`` (atomically, one by one)."""
    for path, vector in zip(paths, vectors):
        features.save_vector(path, vector)


def embed_chunk(paths, out_dir, net) -> list:
    """Decode, embed and save one chunk of image ``paths`` into ``out_dir``, all in this process:
    the whole of stage 2's work on some paths, for a worker that is handed a chunk at a time.

    ``net`` is a :class:`~photomap.network.Network`. Returns the ``(path, reason)`` of the bad
    images; the others have their vector complete in ``out_dir``.
    """
    import torch

    idxs, batch, bad = collate([(i,) + decode(p, net.preprocess) for i, p in enumerate(paths)])
    if batch is not None:
        with torch.inference_mode():
            vectors = net(batch).cpu().numpy()
        save_vectors([vector_path(out_dir, paths[i]) for i in idxs], vectors)
    return [(paths[i], reason) for i, reason in bad]
