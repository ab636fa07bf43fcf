"""Stages 1 and 2 on a real Dask cluster on 127.0.0.1 (a scheduler and two worker processes): the same
.meta lines, thumbnails and vectors as a local run, a worker or the scheduler killed mid-run."""
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, make_photo, wait_until

PY = sys.executable
DASK = os.path.join(os.path.dirname(PY), "dask")
# The driver gives up on a lost scheduler after this, instead of dask's default 30 s.
FAST_GIVE_UP = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s"}


def env(**extra):
    """The environment for the commands and the cluster: this checkout importable, no GPU asked for."""
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)


def photos(folder, n):
    """``n`` distinct photos in two subfolders of ``folder`` plus one bad file; returns the folder."""
    for i in range(n):
        make_photo(folder / ("ab"[i % 2]) / ("p%03d.jpg" % i), size=(320, 240),
                   color=(i * 37 % 256, i * 91 % 256, 60))
    (folder / "a" / "broken.jpg").write_bytes(b"not a photo")
    return folder


class Cluster:
    """A ``dask scheduler`` and ``workers`` ``dask worker`` processes (one thread each, no nanny, so a
    SIGKILL really ends a worker) on 127.0.0.1; ``stop()`` ends them all."""

    def __init__(self, tmp_path, workers=2):
        self.file = str(tmp_path / "scheduler.json")
        self.procs = []
        self.scheduler = self._start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                     "--scheduler-file", self.file)
        wait_until(lambda: os.path.exists(self.file), 60, "the scheduler file")
        self.workers = [self._start("worker", "--scheduler-file", self.file, "--nthreads", "1",
                                    "--no-nanny", "--no-dashboard", "--host", "127.0.0.1")
                        for _ in range(workers)]
        from distributed import Client

        with Client(scheduler_file=self.file, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)
            self.address = client.scheduler.address

    def _start(self, *args):
        proc = subprocess.Popen([DASK] + list(args), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path):
    pytest.importorskip("distributed")
    c = Cluster(tmp_path)
    yield c
    c.stop()


def stage1(*args, **kwargs):
    """process_photos.py as a subprocess (stdout to a file when ``stdout`` is one); waits for it."""
    return subprocess.run([PY, os.path.join(ROOT, "process_photos.py")] + [str(a) for a in args],
                          stdout=kwargs.pop("stdout", subprocess.PIPE), stderr=subprocess.PIPE, text=True,
                          env=env(**FAST_GIVE_UP), timeout=300, **kwargs)


def start_stage1(meta_file, *args):
    """process_photos.py started with its stdout appended to ``meta_file``; returns the Popen."""
    with open(meta_file, "ab") as out:
        return subprocess.Popen([PY, os.path.join(ROOT, "process_photos.py")] + [str(a) for a in args],
                                stdout=out, stderr=subprocess.PIPE, text=True, env=env(**FAST_GIVE_UP))


def lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def files(folder):
    """``{name: bytes}`` of the files in ``folder``."""
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = f.read()
    return out


def local_stage1(tmp_path, root):
    """The plain local run's .meta lines and thumbnails, the reference for the cluster's."""
    ref = stage1("-d", root, "-o", tmp_path / "local", "-q")
    assert ref.returncode == 0, ref.stderr
    return sorted(ref.stdout.splitlines()), files(tmp_path / "local")


# ---------------------------------------------------------------- without a cluster

def test_without_scheduler_dask_is_not_imported(tmp_path):
    root = photos(tmp_path / "photos", 2)
    code = ("import sys; from photomap.commands import process_photos, embeddings; "
            "status = process_photos.main(['-d', %r, '-o', %r, '-q']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')), status, "
            "file=sys.stderr)" % (str(root), str(tmp_path / "t")))
    done = subprocess.run([PY, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
    assert done.stderr.splitlines()[-1] == "[] 0", done.stderr


@pytest.mark.parametrize("script", ["process_photos.py", "embeddings.py"])
def test_scheduler_without_dask_is_one_line_naming_the_extra(tmp_path, script):
    root = photos(tmp_path / "photos", 1)
    # A None entry in sys.modules makes "import distributed" fail as if it were not installed.
    code = ("import sys; sys.modules['distributed'] = None; "
            "from photomap.commands.%s import main; sys.exit(main(%r))" % (
                script[:-len(".py")], ["-o", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:1"]
                + (["-d", str(root)] if script == "process_photos.py" else [str(root / "b" / "p000.jpg")])))
    done = subprocess.run([PY, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: --scheduler needs Dask distributed, which is not installed: "
        "pip install 'photomap[cluster]' (or: pip install 'dask[distributed]')"]


def test_unreachable_scheduler_is_one_line_before_any_work(tmp_path):
    pytest.importorskip("distributed")
    root = photos(tmp_path / "photos", 2)
    done = stage1("-d", root, "-o", tmp_path / "thumbs", "--scheduler", "tcp://127.0.0.1:9")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: cannot reach the Dask scheduler tcp://127.0.0.1:9")
    assert os.listdir(tmp_path / "thumbs") == []


# ---------------------------------------------------------------- stage 1

def test_stage1_on_two_workers_matches_the_local_run(tmp_path, cluster):
    root = photos(tmp_path / "photos", 12)
    want_lines, want_files = local_stage1(tmp_path, root)
    done = stage1("-d", root, "-o", tmp_path / "thumbs", "--scheduler", cluster.file)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == want_lines
    assert files(tmp_path / "thumbs") == want_files
    assert "12 new thumbnails" in done.stderr and "1 failed" in done.stderr
    assert "skipped %s: not an image" % (root / "a" / "broken.jpg") in done.stderr


def test_stage1_worker_killed_mid_run_loses_and_repeats_nothing(tmp_path, cluster):
    root = photos(tmp_path / "photos", 40)
    want_lines, want_files = local_stage1(tmp_path, root)
    meta_file = tmp_path / "run.meta"
    proc = start_stage1(meta_file, "-d", root, "-o", tmp_path / "thumbs", "--scheduler", cluster.address)
    wait_until(lambda: os.path.exists(meta_file) and lines(meta_file), 120, "the first .meta lines")
    cluster.workers[0].send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    got = lines(meta_file)
    assert len(got) == len(set(got)) == len(want_lines), err  # each line once
    assert sorted(got) == want_lines
    assert files(tmp_path / "thumbs") == want_files
    assert cluster.workers[0].poll() == -signal.SIGKILL


def test_stage1_scheduler_lost_is_one_error_and_minus_l_finishes(tmp_path, cluster):
    root = photos(tmp_path / "photos", 40)
    want_lines, want_files = local_stage1(tmp_path, root)
    meta_file = tmp_path / "run.meta"
    out = tmp_path / "thumbs"
    proc = start_stage1(meta_file, "-d", root, "-o", out, "-q", "--scheduler", cluster.address)
    wait_until(lambda: os.path.exists(meta_file) and lines(meta_file), 120, "the first .meta lines")
    cluster.scheduler.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "lost the Dask scheduler" in errors[0], err
    assert "Traceback" not in err
    assert len(lines(meta_file)) < len(want_lines)
    cluster.stop()

    (tmp_path / "again").mkdir()
    again = Cluster(tmp_path / "again")
    try:
        with open(meta_file, "ab") as f:
            done = stage1("-d", root, "-o", out, "-q", "-l", meta_file, "--scheduler", again.file, stdout=f)
    finally:
        again.stop()
    assert done.returncode == 0, done.stderr
    got = lines(meta_file)
    assert len(got) == len(set(got)) and sorted(got) == want_lines
    assert files(out) == want_files


# ---------------------------------------------------------------- stage 2

def stage2_args(out, weights, scheduler=None):
    return ([PY, os.path.join(ROOT, "embeddings.py"), "-o", str(out), "--device", "cpu", "--precision", "fp32",
             "--weights", str(weights), "-q"] + (["--scheduler", scheduler] if scheduler else []) + ["-"])


def vectors(folder):
    """``{name: vector}`` of the .npy files in ``folder``."""
    from photomap import features

    return {n: features.load_vector(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
            if n.endswith(".npy")}


def test_stage2_worker_killed_mid_run_gives_the_local_runs_vectors(tmp_path, cluster, random_weights):
    import numpy as np

    root = photos(tmp_path / "photos", 30)
    inputs = sorted(str(p) for p in root.rglob("*.jpg"))
    stdin = "".join(p + "\n" for p in inputs)
    ref = subprocess.run(stage2_args(tmp_path / "local", random_weights), input=stdin, env=env(),
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    want = vectors(tmp_path / "local")
    assert len(want) == 30

    out = tmp_path / "features"
    proc = subprocess.Popen(stage2_args(out, random_weights, cluster.address), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(**FAST_GIVE_UP))
    proc.stdin.write(stdin)
    proc.stdin.close()
    wait_until(lambda: out.exists() and any(n.endswith(".npy") for n in os.listdir(out)), 180,
               "the first vector from the cluster")
    cluster.workers[0].send_signal(signal.SIGKILL)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    err = proc.stderr.read()
    assert proc.stdout.read() == ""
    assert err.splitlines() == ["embeddings: skipped %s: not an image (cannot identify image file)"
                                % (root / "a" / "broken.jpg")]
    got = vectors(out)
    assert sorted(got) == sorted(want)
    for name in want:
        assert np.allclose(got[name], want[name], rtol=1e-4, atol=1e-4), name
    assert sorted(os.listdir(out)) == sorted(os.listdir(tmp_path / "local"))  # no temporary file left

    again = subprocess.run([a for a in stage2_args(out, random_weights, cluster.address) if a != "-q"], input=stdin,
                           env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "0 embedded, 30 skipped existing" in again.stderr
