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

from photomap import classifier, decode, embed, features, fsutil, network, quantize
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


def auto_precision():
    """What --precision auto picks on this machine's CPU (int8 also leaves int8.json beside)."""
    import torch

    return network.choose_precision("auto", torch.device("cpu"))


def side_files():
    """The files a default CPU run leaves beside the vectors."""
    return ["classifier.npz", "features.json"] + (["int8.json"] if auto_precision() == "int8" else [])


# ------------------------------------------------------------------------------------ vectors

def test_hub_cache_vectors_size_dtype_identity_and_differences(tmp_path, torch_home, stage2):
    import torch

    photos = photo_crops(tmp_path / "in", 3)
    twin = str(tmp_path / "in" / "twin.jpg")
    shutil.copyfile(photos[0], twin)
    out = tmp_path / "feats"
    status, err = stage2("-o", out, *CPU, *photos, twin)
    assert status == 0, err
    expected = {"bf16": r"bf16 \(oneDNN layout; auto: this CPU has native bf16\)",
                "int8": r"int8 \((onednn|x86|fbgemm) engine, min cosine 0\.99\d\d to fp32 on 4 images; auto: no "
                        r"native bf16 on this CPU\)",
                "fp32": r"fp32 \(auto: no native bf16 on this CPU; .*\)"}[auto_precision()]
    assert re.fullmatch(r"embeddings: device cpu \(%d threads\), precision %s" % (
        torch.get_num_threads(), expected), err[0]), err[0]
    assert err[-1].startswith("embeddings: 4 embedded, 0 skipped existing, 0 failed in ")
    assert npy_files(out) == sorted(side_files() + ["twin.jpg.npy"] +
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

    # Deterministic, and the --weights route with the same file gives the same vectors (the same
    # inputs, so int8 calibrates on the same images).
    again = tmp_path / "again"
    assert stage2("-o", again, *CPU, *photos, twin)[0] == 0
    weights = torch_home / "hub" / "checkpoints" / RESNET18_CHECKPOINT
    local = tmp_path / "local"
    assert stage2("-o", local, *CPU, "--weights", weights, *photos, twin)[0] == 0
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
    assert npy_files(out) == side_files() + ["photo00.jpg.npy", "photo01.jpg.npy"]


def test_a_chunk_embedded_in_one_call_matches_the_run(tmp_path, random_weights, stage2):
    import torch

    photos = photo_crops(tmp_path / "in", 3)
    bad = tmp_path / "in" / "notes.jpg"
    bad.write_text("not an image\n")
    ran = tmp_path / "ran"
    assert stage2("-o", ran, *CPU, "--weights", random_weights, *photos)[0] == 0
    model, _, transforms = load_model("resnet18", random_weights)
    # The network the run used: in int8 (auto on CPUs without bf16), from the folder's int8.json.
    cpu = torch.device("cpu")
    net = network.Network(feature_head(model)[0], cpu, network.choose_precision("auto", cpu),
                          decode.Preprocess(transforms))
    if net.precision == "int8":
        side = json.loads((ran / "features.json").read_text())
        net.quantize(ran, {k: side[k] for k in features.IDENTITY_KEYS}, [])
        assert net.describe().startswith("int8 (")
    chunk = tmp_path / "chunk"
    chunk.mkdir()
    assert embed.embed_chunk(photos[:2] + [str(bad)] + photos[2:], chunk, net) == [
        (str(bad), "not an image (cannot identify image file)")]
    assert npy_files(chunk) == [os.path.basename(p) + ".npy" for p in photos]
    for p in photos:
        assert np.allclose(vec(chunk, p), vec(ran, p), rtol=1e-4, atol=1e-4)
        if net.precision == "int8":  # integer arithmetic: the same bytes, whatever the batch
            assert np.array_equal(vec(chunk, p), vec(ran, p))


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
    assert npy_files(out) == side_files() + ["photo00.jpg.npy"]


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
    assert npy_files(out) == sorted(side_files() + ["photo00.jpg.npy", "photo01.jpg.npy",
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
                         input=stdin, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"", "stdout carries no logs"
    assert npy_files(tmp_path / "feats") == side_files() + ["photo00.jpg.npy", "photo01.jpg.npy"]


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


# ------------------------------------------------------------------------------------ int8 (x86 CPUs)

needs_int8 = pytest.mark.skipif(quantize.unavailable() is not None,
                                reason="int8 needs an x86 CPU and torch's x86 int8 engine: %s" %
                                       quantize.unavailable())


def thumbnails(folder, n, size=128):
    """``n`` photo-like JPEG thumbnails from the demo sample's photographs (crops, tints, flips)."""
    from photomap_tools.sample import make_thumbnails

    return make_thumbnails(str(folder), n, size=size)


def int8_params(folder):
    return json.loads((folder / quantize.PARAMS).read_text())


@needs_int8
def test_int8_vectors_stay_within_the_bar_of_fp32_on_photos(tmp_path, random_weights, stage2):
    import torch

    photos = thumbnails(tmp_path / "in", 24)
    w = ["--weights", random_weights] + CPU
    assert stage2("-o", tmp_path / "fp32", "--precision", "fp32", *w, *photos)[0] == 0
    status, err = stage2("-o", tmp_path / "int8", "--precision", "int8", *w, *photos)
    assert status == 0, err
    stored = int8_params(tmp_path / "int8")
    assert err[0] == ("embeddings: device cpu (%d threads), precision int8 (%s engine, min cosine "
                      "%.4f to fp32 on 24 images)" % (torch.get_num_threads(), stored["engine"],
                                                      stored["min_cosine"]))
    assert json.loads((tmp_path / "int8" / "features.json").read_text())["precision"] == "int8"
    assert stored["calibration_images"] == 24 and stored["model"] == "resnet18"
    cos = [cosine(vec(tmp_path / "fp32", p), vec(tmp_path / "int8", p)) for p in photos]
    assert min(cos) >= quantize.MIN_COSINE
    assert abs(min(cos) - stored["min_cosine"]) < 1e-4, "the stored figure is the measured one"
    assert max(cos) < 0.99999, "int8 computed these, not fp32"


@needs_int8
def test_int8_below_the_bar_runs_fp32_with_one_line_even_quiet(tmp_path, random_weights, stage2,
                                                               monkeypatch):
    import torch

    photos = thumbnails(tmp_path / "in", 5)
    w = ["--weights", random_weights] + CPU
    monkeypatch.setattr(quantize, "MIN_COSINE", 1.5)  # no vector can be that close: int8 must fail
    out = tmp_path / "feats"
    status, err = stage2("-o", out, "-q", "--precision", "int8", *w, *photos[:4])
    assert status == 0
    assert err == ["embeddings: device cpu (%d threads), precision fp32 (int8 kept min cosine %.4f "
                   "to fp32 on 4 images, below 1.50)" % (torch.get_num_threads(),
                                                          int8_params(out)["min_cosine"])]
    assert json.loads((out / "features.json").read_text())["precision"] == "fp32"
    assert stage2("-o", tmp_path / "fp32", "--precision", "fp32", *w, *photos[:4])[0] == 0
    for p in photos[:4]:
        assert np.array_equal(vec(out, p), vec(tmp_path / "fp32", p)), "the fp32 network wrote these"

    # The measurement is kept: a run adding photos judges it again without calibrating again.
    before = (out / quantize.PARAMS).read_bytes()
    status, err = stage2("-o", out, "-q", "--precision", "int8", *w, photos[4])
    assert status == 0 and len(err) == 1 and err[0].endswith("on 4 images, below 1.50)")
    assert (out / quantize.PARAMS).read_bytes() == before


@needs_int8
def test_int8_corrupt_or_foreign_params_file_is_recalibrated_with_one_line(tmp_path, random_weights,
                                                                           stage2):
    photos = thumbnails(tmp_path / "in", 4)
    w = ["--weights", random_weights, "--precision", "int8"] + CPU
    ref = tmp_path / "ref"
    assert stage2("-o", ref, *w, *photos)[0] == 0
    cases = {"cut": ((ref / quantize.PARAMS).read_bytes()[:100], "is unreadable ("),
             "other": (b'{"format": "something else"}\n', "is not a photomap int8 file"),
             "resnet50": (json.dumps(dict(int8_params(ref), model="resnet50")).encode(),
                          "is made for model resnet50, not resnet18")}
    for name, (content, reason) in cases.items():
        out = tmp_path / name
        out.mkdir()
        (out / quantize.PARAMS).write_bytes(content)
        status, err = stage2("-o", out, *w, *photos)
        assert status == 0
        said = [line for line in err if quantize.PARAMS in line]
        assert len(said) == 1 and said[0].startswith("embeddings: %s in %s %s" % (
            quantize.PARAMS, out, reason)) and said[0].endswith(": calibrating again"), said
        assert int8_params(out) == int8_params(ref), "calibrated again on the same images"
        for p in photos:
            assert np.array_equal(vec(out, p), vec(ref, p)), name


@needs_int8
def test_int8_model_that_fx_cannot_trace_falls_back_to_fp32(tmp_path):
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


@needs_int8
def test_int8_folder_keeps_the_engine_it_was_calibrated_for(tmp_path, monkeypatch):
    import torch
    import torchvision

    from photomap.network import fold_batchnorm

    engines = [e for e in quantize.ENGINES if e in torch.backends.quantized.supported_engines]
    if len(engines) < 2:
        pytest.skip("this torch has one int8 engine only: %s" % engines)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=8).eval()
    model, _ = fold_batchnorm(model)
    x = torch.rand(6, 3, 64, 64) * 4 - 2
    identity = {"model": "resnet18"}
    # A folder calibrated when the engine of choice was the second one (an older photomap: "x86").
    monkeypatch.setattr(quantize, "ENGINES", tuple(engines[1:]))
    old = quantize.build(model, x[:1], str(tmp_path), identity, lambda: [x])
    assert old.model is not None and int8_params(tmp_path)["engine"] == engines[1]
    monkeypatch.undo()
    assert quantize.engine() == engines[0]
    again = quantize.build(model, x[:1], str(tmp_path), identity, lambda: pytest.fail("calibrated again"))
    assert again.params["engine"] == engines[1] and again.why.endswith("(stored)")
    with torch.inference_mode():
        assert torch.equal(again.model(x), old.model(x)), "the stored engine computes the same vectors"
    (tmp_path / "new").mkdir()
    new = quantize.build(model, x[:1], str(tmp_path / "new"), identity, lambda: [x])
    assert new.params["engine"] == engines[0], "a new folder takes the first engine"


@needs_int8
def test_int8_final_pooling_runs_on_dequantized_values_and_old_files_keep_int8_pooling(tmp_path):
    import torch

    class Net(torch.nn.Module):  # a pooling inside (feeds a conv) and a final one (feeds the output)
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.inner = torch.nn.AvgPool2d(2)
            self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
            self.pool = torch.nn.AdaptiveAvgPool2d(1)
            self.head = torch.nn.Identity()

        def forward(self, x):
            x = torch.relu(self.conv2(self.inner(torch.relu(self.conv1(x)))))
            return self.head(torch.flatten(self.pool(x), 1))

    torch.manual_seed(0)
    model = Net().eval()
    x = torch.rand(40, 3, 16, 16) * 4 - 2
    identity = {"model": "net"}
    outcome = quantize.build(model, x[:1], str(tmp_path), identity, lambda: [x[:32]])
    assert outcome.model is not None and int8_params(tmp_path)["float_pool"] is True
    fed = {n.target: n.args[0] for n in outcome.model.graph.nodes if n.op == "call_module"}
    assert fed["pool"].op == "call_method" and fed["pool"].target == "dequantize", "pooled in float"
    assert fed["conv2"].target == "inner" and fed["inner"].target != "dequantize", \
        "the inner pooling feeds an int8 layer: it stays int8"
    with torch.inference_mode():
        want, got = model(x), outcome.model(x)
        pooled_int8 = quantize._convert(quantize._prepare(model, x[:1], int8_params(tmp_path)["engine"]),
                                        int8_params(tmp_path)["activations"], float_pool=False)(x)
    assert got.dtype == torch.float32 and got.shape == want.shape
    # Pooled in int8 the means keep the activation's scale: a few values per dimension; in float, many.
    assert len(torch.unique(got[:, 0])) > 2 * len(torch.unique(pooled_int8[:, 0]))
    assert quantize.min_cosine(got, want) > 0.99

    # A folder calibrated before float pooling existed (no "float_pool" in its int8.json) keeps
    # computing its vectors as it did, byte for byte.
    old = {k: v for k, v in int8_params(tmp_path).items() if k != "float_pool"}
    (tmp_path / quantize.PARAMS).write_text(json.dumps(old))
    again = quantize.build(model, x[:1], str(tmp_path), identity, lambda: pytest.fail("calibrated again"))
    with torch.inference_mode():
        assert torch.equal(again.model(x), pooled_int8)


def test_int8_params_first_writer_wins_so_every_worker_uses_one_calibration(tmp_path):
    path = tmp_path / "x.json"
    assert fsutil.write_once(path, b"first") is True
    assert fsutil.write_once(path, b"second") is False
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["x.json"]
    theirs = {"model": "m", "activations": {}, "min_cosine": 0.995, "calibration_images": 32}
    assert quantize.write_params(str(tmp_path), theirs) is theirs
    got = quantize.write_params(str(tmp_path), dict(theirs, min_cosine=0.999))
    assert got["min_cosine"] == 0.995, "a worker that calibrated second takes the stored file"


@needs_int8
def test_int8_sigkill_then_resume_gives_byte_identical_files(tmp_path, random_weights):
    paths = thumbnails(tmp_path / "thumbs", 96, size=64)
    stdin = "".join(p + "\n" for p in paths)
    args = ["--device", "cpu", "-j", "1", "-b", "8", "--precision", "int8", "--weights",
            random_weights, "-v", "-"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd("-o", killed, *args), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    proc.stdin.write(stdin)
    proc.stdin.close()

    def some_written():
        assert proc.poll() is None, "the run ended before it could be killed"
        return killed.exists() and sum(n.endswith(".npy") for n in os.listdir(killed)) >= 16

    wait_until(some_written, 240, "16 vectors written by the run to be killed", 0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = [n for n in os.listdir(killed) if n.endswith(".npy") and not n.startswith(".")]
    assert 16 <= len(partial) < 96
    calibrated = (killed / quantize.PARAMS).read_bytes()

    res = subprocess.run(cmd("-o", killed, *args), input=stdin, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "to fp32 on 32 images (stored))" in res.stderr, "the resumed run did not calibrate again"
    assert (killed / quantize.PARAMS).read_bytes() == calibrated
    assert "%d embedded, %d skipped existing, 0 failed" % (96 - len(partial), len(partial)) in \
        res.stderr

    clean = tmp_path / "clean"
    res = subprocess.run(cmd("-o", clean, *args), input=stdin, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert npy_files(killed) == npy_files(clean)
    for name in npy_files(clean):
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name
# ------------------------------------------------------------------------------------ the classifier kept

def test_the_models_classifier_is_kept_and_maps_saved_vectors_to_its_logits(tmp_path, random_weights, stage2):
    import torch
    import torchvision
    from PIL import Image

    photos = photo_crops(tmp_path / "in", 3)
    out = tmp_path / "feats"
    assert stage2("-o", out, *CPU, "--precision", "fp32", "--weights", random_weights, *photos)[0] == 0
    assert json.loads((out / "features.json").read_text())["classifier"] == "classifier.npz"
    clf, reason = classifier.load(out, 512)
    assert reason is None
    state = torch.load(random_weights)
    assert np.array_equal(clf.weight, state["fc.weight"].numpy())
    assert np.array_equal(clf.bias, state["fc.bias"].numpy())
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    assert clf.categories == tuple(weights.meta["categories"]) and clf.categories[0] == "tench"
    model = torchvision.models.resnet18()
    model.load_state_dict(state)
    with torch.inference_mode():
        full = model.eval()(weights.transforms()(Image.open(photos[1]).convert("RGB"))[None])[0].numpy()
    ours = vec(out, photos[1]) @ clf.weight.T + clf.bias
    assert np.corrcoef(full, ours)[0, 1] > 0.999 and np.argmax(full) == np.argmax(ours)


def test_an_existing_folder_gets_its_classifier_without_embedding_again(tmp_path, random_weights, stage2):
    photos = photo_crops(tmp_path / "in", 2)
    out = tmp_path / "feats"
    w = ["--weights", random_weights] + CPU
    assert stage2("-o", out, *w, *photos)[0] == 0
    good = (out / "classifier.npz").read_bytes()
    # As an earlier version left it: no classifier.npz, features.json without the entry.
    os.remove(out / "classifier.npz")
    side = json.loads((out / "features.json").read_text())
    del side["classifier"]
    (out / "features.json").write_text(json.dumps(side))
    for p in photos:
        os.remove(p)  # nothing can be embedded again
    status, err = stage2("-o", out, *w, *photos)
    assert status == 0 and err[-1].startswith("embeddings: 0 embedded, 2 skipped existing, 0 failed")
    assert classifier.load(out, 512)[1] is None
    assert json.loads((out / "features.json").read_text())["classifier"] == "classifier.npz"
    (out / "classifier.npz").write_bytes(good[:300])  # a damaged one is made again
    assert stage2("-o", out, *w, *photos)[0] == 0
    assert (out / "classifier.npz").read_bytes() == good


def test_a_model_with_layers_after_its_last_linear_gets_no_classifier_said_once(
        tmp_path, random_weights, stage2, monkeypatch):
    import torch.nn as nn

    real = embed.load_model

    def softmax_after_fc(name, weights_path=None):
        model, info, transforms = real(name, weights_path)
        model.fc = nn.Sequential(model.fc, nn.Softmax(dim=1))
        return model, info, transforms

    monkeypatch.setattr(embed, "load_model", softmax_after_fc)
    photos = photo_crops(tmp_path / "in", 2)
    out = tmp_path / "feats"
    w = ["--weights", random_weights] + CPU
    status, err = stage2("-o", out, *w, photos[0])
    assert status == 0
    reason = "layers come after its last Linear layer, so that layer does not act on the saved vector"
    assert [line for line in err if "classifier" in line] == [
        "embeddings: no classifier.npz: %s; the map's clusters will be unnamed" % reason]
    side = json.loads((out / "features.json").read_text())
    assert side["classifier"] is None and side["classifier_note"] == reason
    assert not (out / "classifier.npz").exists()
    status, err = stage2("-o", out, *w, photos[1])
    assert status == 0 and not [line for line in err if "classifier" in line]
    assert json.loads((out / "features.json").read_text())["classifier"] is None
