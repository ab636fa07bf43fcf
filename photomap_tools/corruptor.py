"""A seeded random corruptor of a small pipeline output, and the checks of what stage 3 must make of
it: exit 0 or one ``error:`` line (never a traceback), every photo whose inputs are intact on the map (at
its place on the previous map while that map is intact), and a summary line that counts exactly what was
broken.

``run_fuzz(rounds, seed, folder)`` is what tests/test_map_fuzz.py (a few rounds in CI) and
bench/fuzz_map.py (many) run. The output is format-true: the stages' own writers make it
(:func:`synthetic.write_map_inputs`), and a first stage 3 run adds the feature pack and the
coordinates cache, so that they too can be broken.
"""
import contextlib
import csv
import io
import json
import os
import random
import re
import shutil
import stat
import warnings
from collections import Counter

import numpy as np

from photomap import featurepack, features, meta
from photomap.commands import visualize
from photomap_tools.synthetic import fake_md5, write_map_inputs

N_PHOTOS, DIM = 12, 24
VECTOR_REASONS = set(features.REASONS) - {"missing vector"}
ANY_LEFT = "any vector reason"  # an outcome np.load alone cannot predict (a flipped header byte)


# ---------------------------------------------------------------------------- the base output

def build_base(root):
    """A small format-true stage 1+2 output (the real writers), aged an hour so the pack takes it,
    and one run of stage 3 over it, so the pack and the coordinates cache exist to be broken."""
    meta_path, thumbs, feats, _ = write_map_inputs(root, N_PHOTOS, dim=DIM, folders="abc")
    for folder in (thumbs, feats):
        for name in os.listdir(folder):
            os.utime(os.path.join(folder, name), ns=(0, os.stat(os.path.join(folder, name)).st_mtime_ns
                                                     - 3600 * 10**9))
    with contextlib.redirect_stderr(io.StringIO()):
        assert visualize.main(args_for(root)) == 0
    assert os.path.isfile(os.path.join(feats, featurepack.PACK_NAME))
    return {fake_md5(i): features.load_vector(features.feature_path_for_md5(feats, fake_md5(i))).copy()
            for i in range(N_PHOTOS)}


def args_for(root):
    root = str(root)
    return ["--meta", os.path.join(root, "thumbs.meta"), "--thumbs", os.path.join(root, "thumbs"),
            "--features", os.path.join(root, "features"), "-o", os.path.join(root, "map.html")]


# ---------------------------------------------------------------------------- the corruptor

def _write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)


def _replace_with(path, kind):
    """Put a folder, a symlink loop or a fifo where ``path`` was."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
    if kind == "folder":
        os.mkdir(path)
    elif kind == "symlink loop":
        os.symlink(os.path.basename(path), path)
    else:
        os.mkfifo(path)


def _unreadable(path):
    """chmod 000; returns whether that really keeps this process out (root reads anyway)."""
    os.chmod(path, 0)
    return not os.access(path, os.R_OK)


def _flip(rng, data: bytes, lo=0, hi=None, n=None):
    data = bytearray(data)
    for _ in range(n or rng.randint(1, 3)):
        pos = rng.randrange(lo, hi if hi is not None else len(data))
        data[pos] ^= rng.randrange(1, 256)
    return bytes(data)


def _values(vec):
    """The outcome stage 3 must give a vector of these values (of the right length)."""
    if not np.isfinite(vec).all():
        return ("left", "non-finite vector")
    if not vec.any():
        return ("left", "all-zero vector")
    return ("kept", vec.astype(np.float32))


def _jpeg(rng):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (rng.randint(1, 64), rng.randint(1, 64)), (rng.randrange(256), 0, 0)).save(buf, "JPEG")
    return buf.getvalue()


def _npz(vec):
    buf = io.BytesIO()
    np.savez(buf, vector=vec)
    return buf.getvalue()


def _npy(array, **kw):
    buf = io.BytesIO()
    np.save(buf, array, **kw)
    return buf.getvalue()


def corrupt_vector(rng, path, vec, lengths):
    """Break one vector file at random; returns ``(op, outcome)``, outcome ``("kept", vector)``,
    ``("left", reason)`` or ``(ANY_LEFT, vector np.load gives or None)``."""
    data = open(path, "rb").read()
    header = len(data) - 4 * DIM
    op = rng.choice(["delete", "truncate", "empty", "flip magic", "flip data", "flip any", "garbage",
                     "a JPEG", "a zip", "pickled objects", "strings", "complex", "2-D", "NaN", "inf",
                     "all zero", "wrong length", "float64", "float16", "big-endian", "(1, d)",
                     "trailing bytes", "folder", "symlink loop", "fifo", "unreadable"])
    if op == "delete":
        os.remove(path)
        return op, ("left", "missing vector")
    if op in ("truncate", "empty"):
        _write(path, data[:rng.randrange(0, len(data)) if op == "truncate" else 0])
        return op, ("left", "truncated vector")
    if op == "flip magic":
        _write(path, _flip(rng, data, 0, 6))
        return op, ("left", "damaged vector")
    if op == "flip data":
        flipped = _flip(rng, data, header)
        _write(path, flipped)
        return op, _values(np.frombuffer(flipped, np.float32, offset=header))
    if op == "flip any":
        _write(path, _flip(rng, data))
        try:
            loaded = np.load(path, allow_pickle=False)
        except Exception:  # noqa: BLE001 (whatever np.load makes of it, stage 3 must leave it out)
            loaded = None
        return op, (ANY_LEFT, loaded)
    if op == "garbage":
        _write(path, bytes([rng.randrange(0, 0x93)]) + rng.randbytes(rng.randrange(0, 400)))
        return op, ("left", "damaged vector")
    other = {"a JPEG": lambda: _jpeg(rng),
             "a zip": lambda: _npz(vec),
             "pickled objects": lambda: _npy(np.array([{"v": vec.tolist()}], dtype=object),
                                             allow_pickle=True),
             "strings": lambda: _npy(np.array(["x"] * DIM)),
             "complex": lambda: _npy(vec.astype(np.complex64)),
             "2-D": lambda: _npy(np.stack([vec, vec]))}
    if op in other:
        _write(path, other[op]())
        return op, ("left", "damaged vector" if op in ("a JPEG", "a zip") else "unusable vector")
    if op in ("NaN", "inf"):
        bad = vec.copy()
        bad[rng.sample(range(DIM), rng.randint(1, DIM))] = np.nan if op == "NaN" else -np.inf
        features.save_vector(path, bad)
        return op, ("left", "non-finite vector")
    if op == "all zero":
        features.save_vector(path, np.zeros(DIM))
        return op, ("left", "all-zero vector")
    if op == "wrong length":
        n = rng.choice([k for k in range(1, 3 * DIM) if k != DIM and k not in lengths])
        lengths.add(n)
        other_vec = np.random.default_rng(rng.randrange(1 << 30)).normal(size=n).astype(np.float32)
        features.save_vector(path, other_vec)
        return op, ("kept", other_vec)
    converted = {"float64": np.float64, "float16": np.float16, "big-endian": ">f4"}
    if op in converted:
        stored = vec.astype(converted[op])
        _write(path, _npy(stored))
        return op, _values(stored.astype(np.float32))
    if op == "(1, d)":
        _write(path, _npy(vec.reshape(1, -1)))
        return op, ("kept", vec)
    if op == "trailing bytes":
        _write(path, data + rng.randbytes(rng.randint(1, 64)))
        return op, ("left", "damaged vector")
    if op == "unreadable":
        return op, ("left", "unreadable vector") if _unreadable(path) else ("kept", vec)
    _replace_with(path, op)
    return op, ("left", "unreadable vector")


def corrupt_thumb(rng, path):
    """Break one thumbnail; returns ``(op, outcome)``: "ok" (its bytes are never decoded by
    stage 3), "missing" or "unreadable"."""
    op = rng.choice(["delete", "empty", "flip bytes", "truncate", "folder", "symlink loop", "fifo",
                     "unreadable"])
    if op == "delete":
        os.remove(path)
        return op, "missing"
    if op == "empty":
        _write(path, b"")
        return op, "unreadable"
    if op in ("flip bytes", "truncate"):
        data = open(path, "rb").read()
        _write(path, _flip(rng, data) if op == "flip bytes" else data[:rng.randrange(1, len(data))])
        return op, "ok"
    if op == "unreadable":
        return op, "unreadable" if _unreadable(path) else "ok"
    _replace_with(path, op)
    return op, "unreadable"


def corrupt_file(rng, path, kind):
    """Break a cache or sidecar file in a way that must not change which photos are on the map (nor,
    except for the coordinates CSV itself, where they are); returns the op."""
    ops = ["delete", "truncate", "empty", "flip bytes", "garbage", "folder", "symlink loop", "unreadable"]
    if kind == "pack":
        ops += ["edited by hand", "another program's npz", "another folder's pack"]
    if kind == "sidecar":
        ops += ["other dim", "dim as text", "a JSON list"]
    if kind == "csv":
        ops += ["edited coordinate", "NaN coordinate"]
    if kind == "key":
        ops += ["other key", "other csv hash"]
    if kind == "meta":
        ops = ["truncate", "flip bytes", "garbage", "empty", "delete", "folder", "duplicate line"]
    op = rng.choice(ops)
    exists = os.path.isfile(path)
    data = open(path, "rb").read() if exists else b""
    if op == "delete":
        if os.path.lexists(path):
            os.remove(path)
    elif op == "truncate":
        _write(path, data[:rng.randrange(0, max(1, len(data)))])
    elif op == "empty":
        _write(path, b"")
    elif op == "flip bytes":
        _write(path, _flip(rng, data) if data else b"\x00")
    elif op == "garbage":
        _write(path, rng.randbytes(rng.randrange(1, 600)))
    elif op in ("folder", "symlink loop"):
        _replace_with(path, op)
    elif op == "unreadable":
        if exists:
            _unreadable(path)
    elif op == "edited by hand" and exists:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["matrix"] = arrays["matrix"] + 1
        np.savez(path, **arrays)
    elif op == "another program's npz":
        np.savez(path, matrix=np.ones((N_PHOTOS, DIM), np.float32))
    elif op == "another folder's pack":
        names = [features.feature_name(fake_md5(i) + ".jpg") for i in range(N_PHOTOS)]
        featurepack.write_pack(path, featurepack.encode_names(names), [4 * DIM + 128] * N_PHOTOS,
                               [rng.randrange(1 << 60)] * N_PHOTOS,
                               [(np.ones((N_PHOTOS, DIM), np.float32), np.arange(N_PHOTOS))])
    elif op in ("other dim", "dim as text", "a JSON list"):
        dim = str(DIM) if op == "dim as text" else rng.choice([12, 512, 0, -1, True])
        value = [1, 2] if op == "a JSON list" else {"model": "resnet18", "dim": dim}
        _write(path, json.dumps(value).encode())
    elif op in ("edited coordinate", "NaN coordinate") and exists:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        if len(rows) > 1:
            rows[rng.randrange(1, len(rows))][1] = "nan" if op == "NaN coordinate" else "123.5"
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        _write(path, buf.getvalue().encode("utf-8"))
    elif op in ("other key", "other csv hash") and exists:
        try:
            key = json.loads(data)
            key["key" if op == "other key" else "coords_sha256"] = "0" * 64
            _write(path, json.dumps(key).encode())
        except (ValueError, TypeError):
            pass
    elif op == "duplicate line" and data:
        lines = data.splitlines(keepends=True)
        _write(path, data + rng.choice(lines).replace(b"img_", b"copy of img_"))
    return op


# ---------------------------------------------------------------------------- one round

LINE = re.compile(r"^visualize: left out (?P<file>\S+) \(.*\): (?P<reason>%s)( \(.*\))?$" % "|".join(
    re.escape(r) for r in sorted(VECTOR_REASONS | {"unreadable thumbnail"})))


def fuzz_round(rng, base_dir, base_vectors, work):
    """Copy the base output to ``work``, break 1-5 of its files at random, run stage 3 and check
    the outcome; returns the list of ``(target, op)`` broken (an ``AssertionError`` says what failed)."""
    shutil.copytree(base_dir, work, symlinks=True)  # copy2: mtimes kept, so the pack still holds
    feats, thumbs = os.path.join(work, "features"), os.path.join(work, "thumbs")
    # Each kind of file is as likely to be picked as any other, however many files it has.
    kinds = [[("vector", i) for i in range(N_PHOTOS)], [("thumb", i) for i in range(N_PHOTOS)],
             [("pack",)], [("sidecar",)], [("csv",)], [("key",)], [("meta",)]]
    targets = []
    for _ in range(rng.randint(1, 5)):
        target = rng.choice(rng.choice(kinds))
        if target not in targets:
            targets.append(target)
    vec_out = {m: ("kept", v) for m, v in base_vectors.items()}
    thumb_out = {m: "ok" for m in base_vectors}
    broken, lengths, fatal_meta = [], set(), False
    files = {"pack": os.path.join(feats, featurepack.PACK_NAME),
             "sidecar": os.path.join(feats, features.SIDECAR),
             "csv": os.path.join(work, "map.coords.csv"), "key": os.path.join(work, "map.coords.key"),
             "meta": os.path.join(work, "thumbs.meta")}
    for target in targets:
        if target[0] == "vector":
            md5 = fake_md5(target[1])
            op, vec_out[md5] = corrupt_vector(rng, features.feature_path_for_md5(feats, md5),
                                              base_vectors[md5], lengths)
        elif target[0] == "thumb":
            md5 = fake_md5(target[1])
            op, thumb_out[md5] = corrupt_thumb(rng, os.path.join(thumbs, md5 + ".jpg"))
        else:
            op = corrupt_file(rng, files[target[0]], target[0])
            fatal_meta |= target[0] == "meta" and op in ("delete", "folder")
        broken.append((target, op))

    stderr = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr):
        warnings.simplefilter("always")
        rc = visualize.main(args_for(work))
    err = stderr.getvalue()
    lines = err.splitlines()
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert all(x.startswith(("visualize: ", "error: ", "  cd ", "  then open ")) for x in lines), err
    errors = [x for x in lines if x.startswith("error: ")]
    assert rc in (0, 2) and len(errors) == (rc == 2), err
    if fatal_meta:
        assert rc == 2 and errors == ["error: no .meta file at %s" % files["meta"]], err
        return broken
    base_csv = os.path.join(base_dir, "map.coords.csv")
    previous = None if ("csv",) in targets else {r[0]: r[1:3] for r in _csv_rows(base_csv)[1:]}
    check_outcome(rc, err, lines, work, feats, files, vec_out, thumb_out, previous)
    return broken


def _sidecar_hint(path):
    try:
        info = json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError):
        return None
    dim = info.get("dim") if isinstance(info, dict) else None
    return dim if type(dim) is int and dim > 0 else None


def _csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def check_outcome(rc, err, lines, work, feats, files, vec_out, thumb_out, previous=None):
    """The map holds exactly the photos whose inputs are usable, each at finite coordinates and, when
    the previous map was left intact (``previous``: md5 -> its x, y as written), exactly where it was
    there; the summary counts exactly what was left out."""
    log = meta.read_meta(files["meta"])  # the .meta format's own reader decides which lines count
    groups = log.by_md5()
    said = {}
    for x in lines:
        m = LINE.match(x)
        if m:
            said[os.path.basename(m["file"])[:32]] = m["reason"]
        else:
            assert not x.startswith("visualize: left out "), x
    expected, candidates = Counter(), {}
    for md5 in sorted(groups):
        if md5 not in thumb_out or thumb_out[md5] == "missing":
            expected[".meta md5s without thumbnail"] += 1
        elif thumb_out[md5] == "unreadable":
            expected["unreadable thumbnail"] += 1
            assert said.get(md5) == "unreadable thumbnail", (md5, err)
        elif vec_out[md5][0] == "left":
            reason = vec_out[md5][1]
            expected[".meta md5s without features" if reason == "missing vector" else reason] += 1
            assert said.get(md5) == (None if reason == "missing vector" else reason), (md5, reason, err)
        elif vec_out[md5][0] == ANY_LEFT and md5 in said:
            assert said[md5] in VECTOR_REASONS, (md5, err)
            expected[said[md5]] += 1
        else:
            vec = vec_out[md5][1]
            if vec_out[md5][0] == ANY_LEFT:  # kept: it must then be what np.load reads there
                assert vec is not None and vec.size >= 1, (md5, err)
                vec = vec.reshape(-1).astype(np.float32)
            candidates[md5] = vec
    lengths = Counter(len(v) for v in candidates.values())
    hint = _sidecar_hint(files["sidecar"])
    dim = (hint if hint in [n for n, c in lengths.items() if c == max(lengths.values())]
           else max(n for n, c in lengths.items() if c == max(lengths.values()))) if lengths else 0
    kept = sorted(m for m, v in candidates.items() if len(v) == dim)
    for md5 in set(candidates) - set(kept):
        expected["wrong-length vector"] += 1
        assert said.get(md5) == "wrong-length vector", (md5, err)
    listed = {n[:-len(".jpg.npy")] for n in os.listdir(feats)
              if n.endswith(".jpg.npy") and not n.startswith(".")}
    expected["features without a .meta line"] = len(listed - set(groups))
    expected["# error lines"] = len(log.errors)
    expected["malformed .meta lines"] = log.malformed
    summary = [x for x in lines if re.match(r"visualize: \d+ photos? \(\d+ files?\) on the map", x)]
    assert len(summary) == 1, err
    n_files = sum(len(groups[m]) for m in kept)
    head = "visualize: %d photo%s (%d file%s) on the map" % (len(kept), "" if len(kept) == 1 else "s",
                                                            n_files, "" if n_files == 1 else "s")
    counts = Counter()
    if "; left out: " in summary[0]:
        for part in summary[0].split("; left out: ")[1].split(", "):
            n, reason = part.split(" ", 1)
            counts[reason[:-1] if reason.endswith(("vectors", "thumbnails")) else reason] += int(n)
    assert summary[0].split(";")[0] == head, (head, err)
    assert counts == +expected, (dict(counts), dict(+expected), err)
    if not kept:
        assert rc == 2, err
        return
    assert rc == 0, err
    page = open(os.path.join(work, "map.html"), encoding="utf-8").read()
    assert all(m in page for m in kept)
    if os.path.isfile(files["csv"]) and not os.path.islink(files["csv"]):
        rows = _csv_rows(files["csv"])
        assert [r[0] for r in rows[1:]] == kept, err
        assert np.isfinite(np.array([[float(r[1]), float(r[2])] for r in rows[1:]])).all(), err
        if previous is not None:  # a growing map keeps its photos' places (left-out ones simply go)
            assert {r[0]: r[1:3] for r in rows[1:]} == {m: previous[m] for m in kept}, err


def run_fuzz(rounds, seed, tmp, base_dir=None, on_round=None):
    """Run ``rounds`` rounds from ``seed`` in folder ``tmp``; returns Counter of ops tried."""
    base_dir = base_dir or os.path.join(tmp, "base")
    base_vectors = build_base(base_dir)
    rng = random.Random(seed)
    tried = Counter()
    for r in range(rounds):
        work = os.path.join(tmp, "round%d" % r)
        try:
            broken = fuzz_round(rng, base_dir, base_vectors, work)
        except Exception as exc:  # noqa: BLE001 (a check that failed, or a traceback out of stage 3)
            raise AssertionError("seed %d, round %d: %s: %s" % (seed, r, type(exc).__name__, exc)) from exc
        tried.update("%s: %s" % (t[0], op) for t, op in broken)
        if on_round:
            on_round(r, broken)
        _remove(work)
    return tried


def _remove(folder):
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
    shutil.rmtree(folder)
