"""Stage 2 (embeddings.py) offline on CPU: random resnet18 weights via the hub cache and --weights."""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import RESNET18_CHECKPOINT, ROOT, make_photo, wait_until

from photomap import decode, embed, features, network
from photomap.commands import embeddings
from photomap.model import feature_head, load_model
from photomap_tools import synthetic

SCRIPT = os.path.join(ROOT, "embeddings.py")
CPU = ["--device", "cpu", "-j", "1", "-b", "4"]


def photo_crops(folder, n, size=224):
    """Write ``n`` real-looking JPEGs (crops of scikit-image's sample photos) and return their paths."""
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea()]
    paths = []
    for i in range(n):
        src = sources[i % 3]
        h, w = src.shape[:2]
        s = min(h, w) * (10 - i // 3) // 10
        crop = Image.fromarray(src[(h - s) // 2:(h - s) // 2 + s, (w - s) // 4:(w - s) // 4 + s])
        path = os.path.join(folder, "photo%02d.jpg" % i)
        os.makedirs(folder, exist_ok=True)
        crop.resize((size, size), Image.LANCZOS).save(path, quality=92)
        paths.append(path)
    return paths


@pytest.fixture
def stage2(run_main):
    """``stage2(*args)``: embeddings.py's main in this process; returns (exit status, stderr lines)."""
    def run(*args):
        status, out, err = run_main(embeddings.main, *args)
        assert out == "", "stdout carries no logs"
        return status, err
    return run


def vec(folder, path):
    return features.load_vector(os.path.join(folder, features.feature_name(path)))


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def npy_files(folder):
    return sorted(os.listdir(folder))


# ------------------------------------------------------------------------------------ vectors

def test_hub_cache_vectors_size_dtype_identity_and_differences(tmp_path, torch_home, stage2):
    import torch

    photos = photo_crops(tmp_path / "in", 3)
    twin = str(tmp_path / "in" / "twin.jpg")
    shutil.copyfile(photos[0], twin)
    out = tmp_path / "feats"
    status, err = stage2("-o", out, *CPU, *photos, twin)
    assert status == 0, err
    assert err[0] == "embeddings: device cpu (%d threads), precision %s" % (
        torch.get_num_threads(), "bf16 (oneDNN layout)" if network.cpu_has_native_bf16() else "fp32")
    assert err[-1].startswith("embeddings: 4 embedded, 0 skipped existing, 0 failed in ")
    assert npy_files(out) == sorted(["features.json", "twin.jpg.npy"] +
                                    [os.path.basename(p) + ".npy" for p in photos])
    raw = np.load(out / "photo00.jpg.npy")
    assert raw.dtype == np.float32 and raw.shape == (512,)
    assert np.array_equal(vec(out, photos[0]), vec(out, twin)), "identical images, identical vectors"
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert cosine(vec(out, photos[a]), vec(out, photos[b])) < 0.999, "different images differ"
    side = json.loads((out / "features.json").read_text())
    assert side["model"] == "resnet18" and side["dim"] == 512
    assert side["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert "resize_size=[256]" in side["preprocessing"] and "crop_size=[224]" in side["preprocessing"]

    # Deterministic, and the --weights route with the same file gives the same vectors.
    again = tmp_path / "again"
    assert stage2("-o", again, *CPU, *photos)[0] == 0
    weights = torch_home / "hub" / "checkpoints" / RESNET18_CHECKPOINT
    local = tmp_path / "local"
    assert stage2("-o", local, *CPU, "--weights", weights, *photos)[0] == 0
    for p in photos:
        assert np.array_equal(vec(out, p), vec(again, p))
        assert np.array_equal(vec(out, p), vec(local, p))
    side = json.loads((local / "features.json").read_text())
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", side["weights"])


def test_bf16_keeps_cosine_to_fp32_on_photos(tmp_path, random_weights, stage2):
    photos = photo_crops(tmp_path / "in", 6)
    w = ["--weights", random_weights] + CPU
    assert stage2("-o", tmp_path / "fp32", "--precision", "fp32", *w, *photos)[0] == 0
    assert stage2("-o", tmp_path / "bf16", "--precision", "bf16", *w, *photos)[0] == 0
    assert json.loads((tmp_path / "bf16" / "features.json").read_text())["precision"] == "bf16"
    for p in photos:
        assert cosine(vec(tmp_path / "fp32", p), vec(tmp_path / "bf16", p)) >= 0.999


def test_one_step_resize_and_crop_gives_the_weights_transforms_values(tmp_path, random_weights):
    import torch
    from PIL import Image
    from skimage import data
    from torchvision.models import ResNet18_Weights
    from torchvision.transforms._presets import ImageClassification

    transforms = ResNet18_Weights.DEFAULT.transforms()
    pre = decode.Preprocess(transforms)
    photo = Image.fromarray(data.astronaut())
    model, _, _ = load_model("resnet18", random_weights)
    model = feature_head(model)[0].eval()
    # (width, height): stage 1 thumbnails, a big photo, a tiny one, already 256 on the short side
    # (crop only), and a crop larger than the resized image (padding): the last two take the
    # two-step path.
    cases = [((224, 161), transforms, True), ((161, 224), transforms, True),
             ((3000, 2000), transforms, True), ((30, 20), transforms, True),
             ((256, 300), transforms, False), ((224, 161), ImageClassification(crop_size=300), False)]
    for size, t, one_step in cases:
        p = decode.Preprocess(t)
        img = photo.resize(size, Image.LANCZOS)
        assert (p.crop_box(*size) is not None) == one_step, size
        want = t(img)
        got = p.on_device(p.on_cpu(img)[None])[0]
        assert got.shape == want.shape and got.dtype == torch.float32
        levels = (got - want).abs() * torch.tensor(t.std).view(3, 1, 1) * 255
        assert levels.max() <= 2.001, (size, levels.max())  # rounding, not a shift or a scale
        assert (levels > 0.5).float().mean() < 0.05, size
        if t is transforms:
            with torch.inference_mode():
                a, b = model(want[None])[0].numpy(), model(got[None])[0].numpy()
            assert cosine(a, b) >= 0.9999, size


def test_network_uses_onednn_layout_where_it_can_and_falls_back_quietly(tmp_path, random_weights,
                                                                        capsys):
    import copy

    import torch
    import torchvision
    from PIL import Image

    if not (network.cpu_has_native_bf16() and torch.backends.mkldnn.is_available()):
        pytest.skip("this CPU has no native bf16, so the oneDNN bf16 path is not taken here")
    model, _, transforms = load_model("resnet18", random_weights)
    model, dim = feature_head(model)
    pre = decode.Preprocess(transforms)
    batch = torch.stack([pre.on_cpu(Image.open(p).convert("RGB"))
                         for p in photo_crops(tmp_path, 6)])
    cpu = torch.device("cpu")
    plain = network.Network(copy.deepcopy(model), cpu, "fp32", pre)
    fast = network.Network(model, cpu, "bf16", pre)
    assert (plain.describe(), fast.describe()) == ("fp32", "bf16 (oneDNN layout)")
    assert fast.folded == 20
    with torch.inference_mode():
        want, got = plain(batch), fast(batch)
    assert got.shape == (6, dim) and got.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(got, want).min() >= 0.999

    # Hardswish has no kernel on oneDNN's layout: the probe fails, autocast runs it, and the
    # failure (which torch.fx prints on its way out) stays out of the user's terminal.
    other, other_dim = feature_head(torchvision.models.mobilenet_v3_small())
    other = network.Network(other, cpu, "bf16", pre)
    assert other.describe() == "bf16 autocast"
    with torch.inference_mode():
        assert other(batch).shape == (6, other_dim)
    assert capsys.readouterr().err == ""


def test_onednn_copy_that_computes_otherwise_is_not_used(random_weights, monkeypatch):
    import torch
    import torch.utils.mkldnn

    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    real = torch.utils.mkldnn.to_mkldnn

    class Skewed(torch.nn.Module):  # runs, right shape, wrong numbers
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            y = self.inner(x).to_dense()
            return y.flip(1).to_mkldnn()

    monkeypatch.setattr(torch.utils.mkldnn, "to_mkldnn", lambda m, dtype: Skewed(real(m, dtype)))
    model, _, transforms = load_model("resnet18", random_weights)
    model, dim = feature_head(model)
    assert network.onednn_model(model.eval(), torch.bfloat16, (224, 224)) is None
    net = network.Network(model, torch.device("cpu"), "bf16", decode.Preprocess(transforms))
    assert net.describe() == "bf16 autocast"


def test_existing_vectors_are_skipped_unopened_and_overwrite_redoes(tmp_path, random_weights, stage2):
    photos = photo_crops(tmp_path / "in", 2)
    out = tmp_path / "feats"
    w = ["--weights", random_weights] + CPU
    assert stage2("-o", out, *w, photos[0])[0] == 0
    os.remove(photos[0])  # skipped without decoding: it need not even exist any more
    (out / ".tmp-photo00.jpg.npy.x1y2").write_bytes(b"left by a killed run")
    status, err = stage2("-o", out, *w, photos[0], photos[1])
    assert status == 0 and err[-1].startswith("embeddings: 1 embedded, 1 skipped existing, 0 failed")
    assert "embeddings: removed 1 temporary files left by an interrupted run" in err
    status, err = stage2("-o", out, *w, "--overwrite", photos[1])
    assert err[-1].startswith("embeddings: 1 embedded, 0 skipped existing")
    assert npy_files(out) == ["features.json", "photo00.jpg.npy", "photo01.jpg.npy"]


def test_a_chunk_embedded_in_one_call_matches_the_run(tmp_path, random_weights, stage2):
    import torch

    photos = photo_crops(tmp_path / "in", 3)
    bad = tmp_path / "in" / "notes.jpg"
    bad.write_text("not an image\n")
    ran = tmp_path / "ran"
    assert stage2("-o", ran, *CPU, "--weights", random_weights, *photos)[0] == 0
    model, _, transforms = load_model("resnet18", random_weights)
    net = network.Network(feature_head(model)[0], torch.device("cpu"), "fp32", decode.Preprocess(transforms))
    chunk = tmp_path / "chunk"
    chunk.mkdir()
    assert embed.embed_chunk(photos[:2] + [str(bad)] + photos[2:], chunk, net) == [
        (str(bad), "not an image (cannot identify image file)")]
    assert npy_files(chunk) == [os.path.basename(p) + ".npy" for p in photos]
    for p in photos:
        assert np.allclose(vec(chunk, p), vec(ran, p), rtol=1e-4, atol=1e-4)


def test_vector_writer_counts_what_is_on_disk_and_raises_a_failed_write(tmp_path):
    import torch

    writer = embed.VectorWriter(torch.device("cpu"))
    paths = [str(tmp_path / ("%d.jpg.npy" % i)) for i in range(10)]
    vectors = torch.arange(10 * 4, dtype=torch.float32).view(10, 4)
    with writer:
        done = sum(writer.put(paths[i:i + 3], vectors[i:i + 3]) for i in range(0, 10, 3))
        done += writer.finish()
    assert done == 10
    for i, p in enumerate(paths):
        assert np.array_equal(features.load_vector(p), vectors[i].numpy())
    with embed.VectorWriter(torch.device("cpu")) as writer, pytest.raises(OSError):
        writer.put([str(tmp_path / "no such folder" / "x.npy")], vectors[:1])
        writer.finish()


# ------------------------------------------------------------------------------------ the folder contract

def test_folder_of_other_weights_or_model_is_refused(tmp_path, random_weights, stage2):
    photos = photo_crops(tmp_path / "in", 2)
    out = tmp_path / "feats"
    assert stage2("-o", out, *CPU, "--weights", random_weights, photos[0])[0] == 0
    other = synthetic.random_weights(tmp_path / "other.pth", seed=1)
    old = json.loads((out / "features.json").read_text())["weights"]
    status, err = stage2("-o", out, *CPU, "--weights", other, photos[1])
    assert status == 2
    assert err == ["error: %s holds vectors made with weights %s, not sha256:%s: use another output "
                   "folder (mixing them would make distances meaningless)" % (
                       out, old, hashlib.sha256(other.read_bytes()).hexdigest())]
    side = json.loads((out / "features.json").read_text())
    side["model"] = "resnet50"
    (out / "features.json").write_text(json.dumps(side))
    status, err = stage2("-o", out, *CPU, "--weights", random_weights, photos[1])
    assert status == 2 and err == [
        "error: %s holds vectors made with model resnet50, not resnet18: use another output folder "
        "(mixing them would make distances meaningless)" % out]
    (out / "features.json").write_text('{"model": "resn')  # cut short by hand
    status, err = stage2("-o", out, *CPU, "--weights", random_weights, photos[1])
    assert status == 2 and len(err) == 1
    assert err[0].startswith("error: cannot read features.json in %s: " % out)
    assert npy_files(out) == ["features.json", "photo00.jpg.npy"]


def test_same_basename_from_two_folders_refuses_the_later(tmp_path, random_weights, stage2):
    a = make_photo(tmp_path / "a" / "x.jpg", color=(200, 20, 20))
    b = make_photo(tmp_path / "b" / "x.jpg", color=(20, 20, 200))
    alias = str(tmp_path / "a" / ".." / "a" / "x.jpg")
    out = tmp_path / "feats"
    status, err = stage2("-o", out, *CPU, "--weights", random_weights, a, b, alias, a)
    assert status == 0
    assert err[1:] == ["embeddings: skipped %s: same basename as an earlier input: %s" % (b, a),
                       err[-1]]
    assert err[-1].startswith("embeddings: 1 embedded, 0 skipped existing, 1 failed "
                              "(same basename as an earlier input x1) in ")
    ref = tmp_path / "ref"
    assert stage2("-o", ref, *CPU, "--weights", random_weights, a)[0] == 0
    assert np.array_equal(vec(out, a), vec(ref, a)), "x.jpg.npy is the first input's vector"


# ------------------------------------------------------------------------------------ bad input

def test_each_bad_input_is_one_line_and_the_rest_is_unharmed(tmp_path, random_weights, stage2):
    good = photo_crops(tmp_path / "in", 4)
    odd = tmp_path / "in" / "dir with space" / "été ü 写真.jpg"
    odd.parent.mkdir()
    shutil.copyfile(good[3], odd)
    missing = tmp_path / "in" / "missing.jpg"
    empty = tmp_path / "in" / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "in" / "truncated.jpg"
    truncated.write_bytes(open(good[1], "rb").read()[:3000])
    text = tmp_path / "in" / "notes.jpg"
    text.write_text("not an image at all\n")
    # -b 4: the second batch is all bad; the others mix good and bad.
    order = [good[0], missing, odd, good[1], empty, truncated, text, missing.with_name("gone.jpg"),
             good[2], truncated.with_name("t2.jpg")]
    shutil.copyfile(truncated, order[-1])
    out = tmp_path / "feats"
    status, err = stage2("-o", out, *CPU, "--weights", random_weights, *order)
    assert status == 0
    assert err[1:-1] == [
        "embeddings: skipped %s: missing file" % missing,
        "embeddings: skipped %s: empty file" % empty,
        "embeddings: skipped %s: truncated image" % truncated,
        "embeddings: skipped %s: not an image (cannot identify image file)" % text,
        "embeddings: skipped %s: missing file" % order[7],
        "embeddings: skipped %s: truncated image" % order[-1],
    ]
    assert err[-1].startswith("embeddings: 4 embedded, 0 skipped existing, 6 failed (missing file x2, "
                              "truncated image x2, empty file x1) in ")
    assert npy_files(out) == sorted(["features.json", "photo00.jpg.npy", "photo01.jpg.npy",
                                     "photo02.jpg.npy", "été ü 写真.jpg.npy"])
    clean = tmp_path / "clean"
    assert stage2("-o", clean, *CPU, "--weights", random_weights, *good)[0] == 0
    for p in good[:3]:
        assert np.allclose(vec(out, p), vec(clean, p), rtol=1e-4, atol=1e-4)
    assert np.allclose(vec(out, odd), vec(clean, good[3]), rtol=1e-4, atol=1e-4)


def test_unknown_model_lists_close_matches(tmp_path, stage2):
    status, err = stage2("-o", tmp_path / "feats", "-m", "resnet81", "x.jpg")
    assert status == 2
    assert len(err) == 1 and err[0].startswith("error: unknown model 'resnet81'; close matches: resnet18")
    assert "resnet101" in err[0]
    assert not (tmp_path / "feats").exists()


def test_cuda_without_gpu_stops_before_work(tmp_path, stage2):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU, so --device cuda is available")
    status, err = stage2("-o", tmp_path / "feats", "--device", "cuda", "x.jpg")
    assert status == 2 and len(err) == 1
    assert err[0].startswith("error: --device cuda: no CUDA GPU is available here")
    assert not (tmp_path / "feats").exists()


def test_unwritable_output_stops_before_work(tmp_path, random_weights, stage2):
    photo = make_photo(tmp_path / "p.jpg")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should go")
    status, err = stage2("-o", blocker / "feats", *CPU, "--weights", random_weights, photo)
    assert status == 2
    assert err == ["error: cannot write to output folder %s: Not a directory" % (blocker / "feats")]
    if os.geteuid() != 0:  # root writes through permission bits: only the case above applies there
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        status, err = stage2("-o", locked, *CPU, "--weights", random_weights, photo)
        assert status == 2 and err == ["error: cannot write to output folder %s: Permission denied" % locked]


def test_missing_weights_offline_names_url_cache_and_way_out(tmp_path, monkeypatch, stage2):
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    photo = make_photo(tmp_path / "p.jpg")
    status, err = stage2("-o", tmp_path / "feats", *CPU, photo)
    assert status == 2
    cache = tmp_path / "empty_home" / "hub" / "checkpoints" / RESNET18_CHECKPOINT
    assert err[-1] == ("error: cannot download weights https://download.pytorch.org/models/%s "
                       "(network disabled by the test); put that file at %s or pass --weights PATH "
                       "(a state-dict file)" % (RESNET18_CHECKPOINT, cache))
    assert not any("Traceback" in line for line in err)
    assert sum(line.startswith("error:") for line in err) == 1
    assert not os.listdir(tmp_path / "feats")


def test_unreadable_weights_file_is_one_line(tmp_path, stage2):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    status, err = stage2("-o", tmp_path / "feats", *CPU, "--weights", bad, "x.jpg")
    assert status == 2 and len(err) == 1 and err[0].startswith("error: cannot read weights file %s: " % bad)


def test_help_opens_with_the_real_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        embeddings.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert ("find output/torch_thumbs -name \\*.jpg | ./embeddings.py -o output/features_resnet18 "
            "-m resnet18 -") in out
    assert "./embeddings.py -o output/features_resnet18 output/torch_thumbs/ab12....jpg ..." in out


# ------------------------------------------------------------------------------------ as a command

def cmd(*args):
    return [sys.executable, SCRIPT] + [str(a) for a in args]


def test_stdin_dash_with_blank_lines_and_crlf(tmp_path, random_weights):
    photos = photo_crops(tmp_path / "in", 2)
    stdin = ("\r\n%s\r\n\n   \n%s\n\n" % tuple(photos)).encode()
    res = subprocess.run(cmd("-o", tmp_path / "feats", *CPU, "--weights", random_weights, "-"),
                         input=stdin, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"", "stdout carries no logs"
    assert npy_files(tmp_path / "feats") == ["features.json", "photo00.jpg.npy", "photo01.jpg.npy"]


def mapped_files(pid):
    """The memory map of process ``pid`` (shared libraries it has loaded), or "" once it has ended."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def test_ctrl_c_during_start_up_is_one_line(tmp_path, random_weights):
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("no /proc here to see the command start importing torch")
    photos = photo_crops(tmp_path / "in", 1)
    proc = subprocess.Popen(cmd("-o", tmp_path / "feats", *CPU, "--weights", random_weights,
                                *photos), stderr=subprocess.PIPE, text=True)

    def importing_torch():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        return "libtorch" in mapped_files(proc.pid)

    # Start-up is under way once torch's library is loaded; the run still has seconds of it ahead.
    wait_until(importing_torch, 60, "embeddings.py to load torch's library", 0.005)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert err.splitlines() == ["embeddings: interrupted before any vector was written"]
    assert not list((tmp_path / "feats").glob("*.npy"))


def test_sigkill_then_rerun_ends_with_an_uninterrupted_runs_files(tmp_path, random_weights):
    from PIL import Image

    folder = tmp_path / "thumbs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(300):  # tiny but all different: decoding is cheap, the network does the work
        p = folder / ("%03d.jpg" % i)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    stdin = "".join(p + "\n" for p in paths)
    args = ["--device", "cpu", "-j", "1", "-b", "8", "--weights", random_weights, "-q", "-"]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd("-o", killed, *args), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc.stdin.write(stdin)
    proc.stdin.close()

    def forty_written():
        assert proc.poll() is None, "the run ended before it could be killed: %s" % proc.stderr.read()
        return killed.exists() and sum(n.endswith(".npy") for n in os.listdir(killed)) >= 40

    wait_until(forty_written, 120, "40 vectors written by the run to be killed", 0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = [n for n in os.listdir(killed) if n.endswith(".npy")]
    assert 40 <= len(partial) < 300
    for name in os.listdir(killed):  # what a kill leaves: complete vectors, perhaps a temp file
        if name.endswith(".npy") and not name.startswith("."):
            assert features.load_vector(killed / name).shape == (512,)

    res = subprocess.run(cmd("-o", killed, *args[:-2], "-"), input=stdin, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.search(r"embeddings: %d embedded, %d skipped existing, 0 failed" % (
        300 - len(partial), len(partial)), res.stderr)

    clean = tmp_path / "clean"
    res = subprocess.run(cmd("-o", clean, *args), input=stdin, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert npy_files(killed) == npy_files(clean)
    assert json.loads((killed / "features.json").read_text()) == \
        json.loads((clean / "features.json").read_text())
    for p in paths:
        a, b = vec(killed, p), vec(clean, p)
        # Same precision on both sides: far tighter than the bf16-vs-fp32 gap (~0.5 %).
        assert np.allclose(a, b, rtol=1e-4, atol=1e-4)
