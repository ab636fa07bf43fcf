"""Stage 2 in int8 (x86 CPUs): fidelity to fp32, the fp32 fallback, and the per-folder int8.json."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT

import embeddings
from photomap import features, fsutil, quantize

SCRIPT = os.path.join(ROOT, "embeddings.py")
CPU = ["--device", "cpu", "-j", "1", "-b", "4"]

pytestmark = pytest.mark.skipif(
    quantize.unavailable() is not None, reason="int8 needs an x86 CPU and torch's x86 int8 engine: %s" % quantize.unavailable())


def sample_photos(folder, n, size=128):
    """``n`` distinct photo-like JPEG thumbnails made from the demo sample's sources (people,
    animals, the moon, text pages, textures...), cropped and lit differently; returns their paths."""
    from PIL import Image, ImageEnhance
    from skimage import data

    from photomap.sample import THEMES

    sources = []
    for names in THEMES.values():
        for name in names:
            img = Image.fromarray(getattr(data, name)())
            sources.append(img.convert("RGB"))
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = sources[i % len(sources)]
        w, h = img.size
        f = 1.0 if i < len(sources) else rng.uniform(0.5, 0.9)
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = img.crop((x, y, x + cw, y + ch))
        img = ImageEnhance.Brightness(img).enhance(1.0 if i < len(sources) else rng.uniform(0.5, 1.4))
        img.thumbnail((size, size), Image.LANCZOS)
        path = os.path.join(folder, "p%03d.jpg" % i)
        img.save(path, quality=90)
        paths.append(path)
    return paths


def run(capsys, *args):
    """``main`` in this process; returns (exit status, stderr lines)."""
    status = embeddings.main([str(a) for a in args])
    return status, capsys.readouterr().err.splitlines()


def vec(folder, path):
    return features.load_vector(os.path.join(folder, features.feature_name(path)))


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def params(folder):
    return json.loads((folder / quantize.PARAMS).read_text())


def test_int8_vectors_stay_within_the_bar_of_fp32_on_photos(tmp_path, random_weights, capsys):
    import torch

    photos = sample_photos(str(tmp_path / "in"), 24)
    w = ["--weights", random_weights] + CPU
    assert run(capsys, "-o", tmp_path / "fp32", "--precision", "fp32", *w, *photos)[0] == 0
    status, err = run(capsys, "-o", tmp_path / "int8", "--precision", "int8", *w, *photos)
    assert status == 0, err
    stored = params(tmp_path / "int8")
    assert err[0] == ("embeddings: device cpu (%d threads), precision int8 (%s engine, min cosine "
                      "%.4f to fp32 on 24 images)" % (torch.get_num_threads(), stored["engine"],
                                                      stored["min_cosine"]))
    assert json.loads((tmp_path / "int8" / "features.json").read_text())["precision"] == "int8"
    assert stored["calibration_images"] == 24 and stored["model"] == "resnet18"
    cos = [cosine(vec(tmp_path / "fp32", p), vec(tmp_path / "int8", p)) for p in photos]
    assert min(cos) >= quantize.MIN_COSINE
    assert abs(min(cos) - stored["min_cosine"]) < 1e-4, "the stored figure is the measured one"
    assert max(cos) < 0.99999, "int8 computed these, not fp32"


def test_auto_picks_int8_on_a_cpu_without_native_bf16(tmp_path, random_weights, capsys):
    from photomap import embed

    if embed.cpu_has_native_bf16():
        pytest.skip("this CPU has native bf16: auto picks bf16 here")
    photos = sample_photos(str(tmp_path / "in"), 3)
    status, err = run(capsys, "-o", tmp_path / "f", "--weights", random_weights, *CPU, *photos)
    assert status == 0
    assert re.fullmatch(r"embeddings: device cpu \(\d+ threads\), precision int8 \(x86 engine, min "
                        r"cosine 0\.99\d\d to fp32 on 3 images; auto: no native bf16 on this CPU\)",
                        err[0]), err[0]


def test_below_the_bar_runs_fp32_with_one_line_even_quiet(tmp_path, random_weights, capsys,
                                                          monkeypatch):
    photos = sample_photos(str(tmp_path / "in"), 4)
    w = ["--weights", random_weights] + CPU
    monkeypatch.setattr(quantize, "MIN_COSINE", 1.5)  # no vector can be that close: int8 must fail
    out = tmp_path / "feats"
    status, err = run(capsys, "-o", out, "-q", "--precision", "int8", *w, *photos)
    assert status == 0
    measured = params(out)["min_cosine"]
    assert err == ["embeddings: device cpu (%d threads), precision fp32 (int8 kept min cosine %.4f "
                   "to fp32 on 4 images, below 1.50)" % (__import__("torch").get_num_threads(),
                                                          measured)]
    assert json.loads((out / "features.json").read_text())["precision"] == "fp32"
    assert run(capsys, "-o", tmp_path / "fp32", "--precision", "fp32", *w, *photos)[0] == 0
    for p in photos:
        assert np.array_equal(vec(out, p), vec(tmp_path / "fp32", p)), "the fp32 network wrote these"

    # The verdict is kept with the measurement: the next run judges it without calibrating again.
    before = (out / quantize.PARAMS).read_bytes()
    extra = sample_photos(str(tmp_path / "more"), 5)[4:]
    status, err = run(capsys, "-o", out, "-q", "--precision", "int8", *w, *extra)
    assert status == 0 and len(err) == 1 and "below 1.50" in err[0]
    assert (out / quantize.PARAMS).read_bytes() == before


def test_corrupt_or_foreign_params_file_is_recalibrated_with_one_line(tmp_path, random_weights,
                                                                      capsys):
    photos = sample_photos(str(tmp_path / "in"), 4)
    w = ["--weights", random_weights, "--precision", "int8"] + CPU
    ref = tmp_path / "ref"
    assert run(capsys, "-o", ref, *w, *photos)[0] == 0
    cases = [("cut short", (ref / quantize.PARAMS).read_bytes()[:100],
              "is unreadable ("),
             ("another program's", b'{"format": "something else"}\n', "is not a photomap int8 file"),
             ("another model's", json.dumps(dict(params(ref), model="resnet50")).encode(),
              "is made for model resnet50, not resnet18")]
    for what, content, reason in cases:
        out = tmp_path / what.replace(" ", "_").replace("'", "")
        out.mkdir()
        (out / quantize.PARAMS).write_bytes(content)
        status, err = run(capsys, "-o", out, *w, *photos)
        assert status == 0
        said = [line for line in err if quantize.PARAMS in line]
        assert said == ["embeddings: %s in %s %s" % (quantize.PARAMS, out, said[0].split(" in %s " % out)[1])]
        assert reason in said[0] and said[0].endswith(": calibrating again"), what
        assert params(out) == params(ref), "calibrated again on the same images: the same file"
        for p in photos:
            assert np.array_equal(vec(out, p), vec(ref, p)), what


def test_model_that_fx_cannot_trace_falls_back_to_fp32(tmp_path):
    import torch

    class DataDependent(torch.nn.Module):  # control flow on values: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)

        def forward(self, x):
            y = self.conv(x)
            return y.mean((2, 3)) if y.sum() > 0 else -y.mean((2, 3))

    x = torch.rand(2, 3, 32, 32)
    outcome = quantize.build(DataDependent().eval(), x[:1], str(tmp_path), {"model": "m"},
                             lambda: [x])
    assert outcome.model is None and outcome.fallback
    assert outcome.why.startswith("this model cannot be quantized by torch.fx (TraceError: ")
    assert not (tmp_path / quantize.PARAMS).exists(), "nothing to reuse: the next run tries again"


def test_first_writer_wins_so_every_worker_uses_one_calibration(tmp_path):
    path = tmp_path / "x.json"
    assert fsutil.write_once(path, b"first") is True
    assert fsutil.write_once(path, b"second") is False
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["x.json"]
    theirs = {"model": "m", "activations": {}, "min_cosine": 0.995, "calibration_images": 64}
    ours = dict(theirs, min_cosine=0.999)
    assert quantize.write_params(str(tmp_path), theirs) is theirs
    got = quantize.write_params(str(tmp_path), ours)
    assert got["min_cosine"] == 0.995, "a worker that calibrated second takes the stored file"


def cmd(*args):
    return [sys.executable, SCRIPT] + [str(a) for a in args]


def test_sigkill_then_resume_gives_byte_identical_files(tmp_path, random_weights):
    paths = sample_photos(str(tmp_path / "thumbs"), 160, size=64)
    stdin = "".join(p + "\n" for p in paths)
    args = ["--device", "cpu", "-j", "1", "-b", "8", "--precision", "int8", "--weights",
            random_weights, "-v", "-"]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd("-o", killed, *args), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    proc.stdin.write(stdin)
    proc.stdin.close()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        done = [n for n in os.listdir(killed) if n.endswith(".npy")] if killed.exists() else []
        if len(done) >= 24:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = [n for n in os.listdir(killed) if n.endswith(".npy") and not n.startswith(".")]
    assert 24 <= len(partial) < 160
    calibrated = (killed / quantize.PARAMS).read_bytes()

    res = subprocess.run(cmd("-o", killed, *args), input=stdin, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "min cosine" in res.stderr and "(stored)" in res.stderr, "no second calibration"
    assert (killed / quantize.PARAMS).read_bytes() == calibrated
    assert "%d embedded, %d skipped existing, 0 failed" % (160 - len(partial), len(partial)) in \
        res.stderr

    clean = tmp_path / "clean"
    res = subprocess.run(cmd("-o", clean, *args), input=stdin, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(killed)) == sorted(os.listdir(clean))
    for name in os.listdir(clean):
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name
