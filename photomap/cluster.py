"""Stages 1 and 2 on a Dask cluster: chunks of paths to worker processes that see the same files,
results back as they come."""
import logging
import os
import threading
from contextlib import contextmanager

from .report import SetupError

INSTALL_HINT = "pip install 'photomap[cluster]' (or: pip install 'dask[distributed]')"


class Lost(Exception):
    """The scheduler went away mid-run; ``str()`` is the message for the ``error:`` line."""


def connect(scheduler):
    """A ``distributed.Client`` for ``scheduler`` (``tcp://host:port`` or a scheduler file as written by
    ``dask scheduler --scheduler-file`` and dask-jobqueue). Raises :class:`SetupError` when Dask is not
    installed, the scheduler cannot be reached or no worker is connected."""
    try:
        from distributed import Client
    except ImportError:
        raise SetupError("--scheduler needs Dask distributed, which is not installed: %s" % INSTALL_HINT)
    # The client logs every failed reconnection with a traceback; a lost scheduler is said in one line.
    for name in ["distributed"] + [n for n in list(logging.root.manager.loggerDict) if n.startswith("distributed.")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    where = {"scheduler_file": scheduler} if os.path.isfile(scheduler) else {"address": scheduler}
    try:
        client = Client(**where, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:
        raise SetupError("cannot reach the Dask scheduler %s: %s" % (scheduler, " ".join(str(exc).split())[:200]))
    if not client.scheduler_info().get("workers"):
        try:
            client.wait_for_workers(1, timeout=30)
        except (TimeoutError, OSError):
            client.close()
            raise SetupError("the Dask scheduler %s has no worker (none joined within 30 s)" % scheduler)
    return client


def threads(client) -> int:
    """How many tasks the cluster runs at once (its worker threads, summed)."""
    return max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))


def chunk_size(n, slots, longest) -> int:
    """Paths per task: enough to make the scheduler's per-task cost (a few ms) small, few enough that
    every slot gets ~8 tasks (so a lost worker costs little and the end is balanced), at most ``longest``."""
    return max(1, min(longest, n // (slots * 8) or 1))


def run_chunks(client, function, items, size, args=()):
    """Yield ``(chunk, function(absolute paths of chunk, *args))`` for consecutive chunks of ``size``
    paths, as the results come in (workers get absolute paths: their working folder is not ours).

    At most two chunks per worker thread are on the cluster at once (backpressure: neither the tasks nor
    the results of the whole list are ever held). A worker lost mid-chunk has its chunks rerun elsewhere
    by the scheduler; each result is still delivered once. Raises :class:`Lost` when the scheduler goes.
    Leaving early cancels the chunks under way.
    """
    from distributed import as_completed

    window = 2 * threads(client)
    chunks = (items[i:i + size] for i in range(0, len(items), size))
    pending = as_completed(loop=client.loop)
    futures = {}

    def submit_next():
        chunk = next(chunks, None)
        if chunk is not None:
            # pure=False: a chunk submitted again (after a resume) is computed again, never taken from a cache.
            future = client.submit(function, [os.path.abspath(p) for p in chunk], *args, pure=False)
            futures[future] = chunk
            pending.add(future)

    try:
        for _ in range(window):
            submit_next()
        for future in pending:
            chunk = futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a result that cannot come back means the cluster failed
                raise Lost(describe_loss(client, exc)) from None
            submit_next()
            yield chunk, result
    finally:
        if futures:
            try:
                client.cancel(list(futures))
            except Exception:  # noqa: BLE001 - the scheduler may be gone already
                pass


def describe_loss(client, exc) -> str:
    """The ``error:`` line's text for a chunk that failed on the cluster."""
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    if client.status != "running" or type(exc).__name__ in ("CancelledError", "FutureCancelledError",
                                                           "CommClosedError"):
        return "lost the Dask scheduler %s (%s)" % (client.scheduler.address, text)
    return "a chunk failed on the Dask cluster: %s: %s" % (type(exc).__name__, text)


# ---------------------------------------------------------------- stage 1


def thumbnail_chunk(paths, out_dir, size, max_pixels) -> list:
    """On a worker: the ``(status, md5, reason, info)`` of :func:`photomap.thumbs.make_thumbnail` for each path."""
    from . import thumbs

    thumbs.init_worker(out_dir, size, max_pixels)
    return [thumbs.make_thumbnail(path) for path in paths]


@contextmanager
def thumbnailer(client, todo, jobs, out_dir, size, max_pixels):
    """Like :func:`photomap.thumbs.thumbnailer` on the cluster of ``client`` (closed on leaving): yields
    the outcomes ``(path, (status, md5, reason, info))`` in the order chunks finish. ``jobs`` is not used:
    the cluster's worker threads set the parallelism."""
    # A thumbnail takes ~20 ms: 64 photos make a task of ~1 s, against the scheduler's few ms per task.
    size_of_chunk = chunk_size(len(todo), threads(client), 64)

    def outcomes():
        for chunk, results in run_chunks(client, thumbnail_chunk, todo, size_of_chunk,
                                         (os.path.abspath(out_dir), size, max_pixels)):
            yield from zip(chunk, results)
    try:
        yield outcomes()
    finally:
        client.close()


# ---------------------------------------------------------------- stage 2

_networks = {}
_networks_lock = threading.Lock()


def worker_network(model_name, weights_path, device, precision):
    """On a worker: the :class:`~photomap.network.Network` for these options, built once per worker
    process and kept (a worker thread waits while another builds it)."""
    key = (model_name, weights_path, device, precision)
    with _networks_lock:
        if key not in _networks:
            from .decode import Preprocess
            from .model import feature_head, load_model
            from .network import Network, choose_device, choose_precision

            dev = choose_device(device)
            model, _, transforms = load_model(model_name, weights_path)
            model, _ = feature_head(model)
            _networks[key] = Network(model, dev, choose_precision(precision, dev), Preprocess(transforms))
        return _networks[key]


def embed_chunk(paths, out_dir, options) -> tuple:
    """On a worker: embed ``paths`` into ``out_dir`` with the network of ``options`` (model, weights,
    device, precision); returns ``[(index in paths, reason)]`` of the bad ones."""
    from . import embed

    where = {path: i for i, path in enumerate(paths)}
    return [(where[path], reason) for path, reason in embed.embed_chunk(paths, out_dir, worker_network(*options))]


def embed_all(client, todo, out_dir, options, batch_size):
    """Yield ``(number of paths done, bad (path, reason) pairs)`` for each chunk of ``todo`` embedded on
    the cluster of ``client`` (closed at the end), one chunk being one batch of ``batch_size``."""
    try:
        for chunk, bad in run_chunks(client, embed_chunk, todo, chunk_size(len(todo), threads(client), batch_size),
                                     (os.path.abspath(out_dir), options)):
            yield len(chunk), [(chunk[i], reason) for i, reason in bad]
    finally:
        client.close()
