"""Stage 1's photo info (date taken, camera, GPS): EXIF written with Pillow, broken dates, the
kill-safe <thumbs>.info sidecar, and --backfill-info for photos listed before it existed."""
import datetime
import io
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT, make_photo, wait_until
from photomap import exif, infolog, meta
from photomap.commands import process_photos

SCRIPT = os.path.join(ROOT, "process_photos.py")
SYDNEY = ((33.0, 51.0, 54.0), (151.0, 12.0, 36.5))  # -33.865, 151.210139


def exif_photo(path, original=None, datetime_=None, offset=None, make=None, model=None, gps=None,
               color=(200, 120, 40), size=(320, 240), fmt=None):
    """Write a photo whose EXIF holds the given DateTimeOriginal, DateTime, OffsetTimeOriginal,
    Make, Model and GPS ((lat dms, lon dms), south and east); return its path."""
    ex = Image.Exif()
    if make is not None:
        ex[0x010F] = make
    if model is not None:
        ex[0x0110] = model
    if datetime_ is not None:
        ex[0x0132] = datetime_
    sub = ex.get_ifd(0x8769)
    if original is not None:
        sub[0x9003] = original
    if offset is not None:
        sub[0x9011] = offset
    if gps is not None:
        g = ex.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = "S", gps[0], "E", gps[1]
    img = Image.new("RGB", size, color)
    os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
    img.save(path, fmt, exif=ex)
    return path


@pytest.fixture
def stage1(run_main):
    """``stage1(*args)``: process_photos.py's main in this process; (status, stdout, stderr lines)."""
    return lambda *args: run_main(process_photos.main, *args)


def sidecar(out):
    """The info sidecar of thumbnail folder ``out``, as a Path."""
    return pathlib.Path(infolog.info_path(out))


def info_of(out):
    return infolog.read_info(out).by_md5


def md5_of(log, path):
    return log.entries[str(path)]


# ---------------------------------------------------------------- what is read

def test_dates_camera_and_gps_from_exif_and_mtime_marked(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "thumbs"
    full = exif_photo(src / "a.jpg", original="2014:06:01 12:03:04", offset="+02:00",
                      datetime_="2015:01:01 00:00:00", make="Canon", model="Canon EOS 5D", gps=SYDNEY)
    only_dt = exif_photo(src / "b.jpg", datetime_="2009:12:24 18:30:00", color=(10, 200, 10))
    plain = make_photo(src / "c.png", color=(10, 10, 200))  # a PNG with no EXIF at all
    os.utime(plain, (0, 1_262_304_000))  # 2010-01-01 UTC
    webp = exif_photo(src / "d.webp", original="2016:02:29 23:59:59", color=(90, 90, 9))
    shutil.copy(full, src / "z_copy.jpg")  # byte-identical copy: one record, like its thumbnail
    rc, stdout, err = stage1("-d", src, "-o", out, "-j", 1)
    assert rc == 0, err
    log = meta.parse_lines(io.StringIO(stdout))
    assert all(line.count("\t") == 1 for line in stdout.splitlines())  # .meta stays md5<TAB>path
    info = info_of(out)
    assert len(info) == 4
    assert info[md5_of(log, full)] == exif.PhotoInfo("2014-06-01T12:03:04+02:00", exif.FROM_ORIGINAL,
                                                     "Canon", "Canon EOS 5D", -33.865, 151.210139)
    assert info[md5_of(log, only_dt)] == exif.PhotoInfo("2009-12-24T18:30:00", exif.FROM_DATETIME)
    expected = datetime.datetime.fromtimestamp(1_262_304_000).astimezone().isoformat(timespec="seconds")
    assert info[md5_of(log, plain)] == exif.PhotoInfo(expected, exif.FROM_MTIME)
    assert info[md5_of(log, webp)].taken == "2016-02-29T23:59:59"
    assert info[md5_of(log, full)].year == 2014
    text = sidecar(out).read_text(encoding="utf-8").splitlines()
    assert text[0] == "md5\ttaken\ttaken_source\tmake\tmodel\tlat\tlon"
    assert len(text) == 5
    assert infolog.info_path(out) == str(tmp_path / "thumbs.info")  # beside the folder, not in it
    assert all(name.endswith(".jpg") for name in os.listdir(out))


def test_iphone_heic_date_and_camera(stage1, tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    ex = exif_photo(tmp_path / "exif.jpg", original="2021:05:05 10:11:12", offset="-04:00", make="Apple",
                    model="iPhone 12").read_bytes()
    img = Image.open(io.BytesIO(ex))
    src = tmp_path / "src"
    src.mkdir()
    try:
        pillow_heif.from_pillow(img).save(str(src / "IMG_0001.HEIC"), exif=img.getexif().tobytes())
    except Exception as exc:  # noqa: BLE001 - some builds cannot encode
        pytest.skip("this pillow-heif cannot encode HEIC to make the fixture: %s" % exc)
    rc, stdout, err = stage1("-d", src, "-o", tmp_path / "thumbs")
    assert rc == 0 and "1 new thumbnails" in err[-1]
    assert list(info_of(tmp_path / "thumbs").values()) == [
        exif.PhotoInfo("2021-05-05T10:11:12-04:00", exif.FROM_ORIGINAL, "Apple", "iPhone 12")]


@pytest.mark.parametrize("bad", ["0000:00:00 00:00:00", "    :  :     :  :  ", "garbage!", "2014:13:45 10:00:00",
                                 "1700:01:01 00:00:00", "2014:02:30 10:00:00"])
def test_broken_exif_dates_are_unknown_never_a_crash(stage1, tmp_path, bad):
    src, out = tmp_path / "src", tmp_path / "thumbs"
    path = exif_photo(src / "x.jpg", original=bad, datetime_=bad, make="Nikon\x00\x00")
    rc, stdout, err = stage1("-d", src, "-o", out)
    assert rc == 0 and "0 failed" in err[-1]
    log = meta.parse_lines(io.StringIO(stdout))
    assert info_of(out)[md5_of(log, path)] == exif.PhotoInfo("", "", "Nikon")


def test_a_broken_exif_block_still_gives_a_thumbnail_and_its_mtime(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "thumbs"
    good = make_photo(src / "x.jpg")
    data = good.read_bytes()
    # An APP1 "Exif" segment whose TIFF header is garbage, right after the JPEG's SOI marker.
    junk = b"Exif\x00\x00" + b"II*\x00\xff\xff\xff\x7f" + b"\x00" * 20
    broken = data[:2] + b"\xff\xe1" + (len(junk) + 2).to_bytes(2, "big") + junk + data[2:]
    good.write_bytes(broken)
    rc, stdout, err = stage1("-d", src, "-o", out)
    assert rc == 0 and "1 new thumbnails" in err[-1]
    info = list(info_of(out).values())
    assert len(info) == 1 and info[0].taken_source == exif.FROM_MTIME


def test_bytes_that_are_no_image_give_their_mtime_only():
    assert exif.info_from_bytes(b"not an image", 0) == exif.PhotoInfo(exif.mtime_text(0), exif.FROM_MTIME)
    assert exif.info_from_bytes(b"not an image") == exif.PhotoInfo()


# ---------------------------------------------------------------- the sidecar keeps .meta's guarantees

def test_cut_last_line_is_ignored_and_resume_writes_nothing_twice(stage1, tmp_path):
    src, out, meta_file = tmp_path / "src", tmp_path / "thumbs", tmp_path / "t.meta"
    for i in range(3):
        exif_photo(src / ("p%d.jpg" % i), original="2020:01:0%d 10:00:00" % (i + 1), color=(80 * i, 9, 9))
    rc, full, _ = stage1("-d", src, "-o", out, "-j", 1)
    ref = sidecar(out).read_text(encoding="utf-8")
    # A kill cut the last info line short; the .meta had only the first photo's line by then
    # (the second photo's info line is written before its .meta line).
    sidecar(out).write_text(ref[:-20], encoding="utf-8")
    meta_file.write_text(full.splitlines(True)[0])
    table = infolog.read_info(out)
    assert table.ends_mid_line and len(table.by_md5) == 2
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1, "-l", meta_file)
    assert rc == 0 and len(stdout.splitlines()) == 2
    table = infolog.read_info(out)
    assert table.malformed == 1 and not table.ends_mid_line
    assert table.by_md5 == infolog.parse_lines(io.StringIO(ref)).by_md5
    lines = sidecar(out).read_text(encoding="utf-8").splitlines(True)
    assert [x for x in lines if x.count("\t") == 6] == ref.splitlines(True)  # each photo once, in order
    # Resuming again (nothing new) adds nothing.
    before = sidecar(out).read_bytes()
    stage1("-d", src, "-o", out, "-j", 1, "-l", meta_file)
    assert sidecar(out).read_bytes() == before


@pytest.fixture(scope="module")
def dated_tree(tmp_path_factory):
    """60 phone-sized photos with EXIF dates and cameras, so a run takes a moment."""
    src = tmp_path_factory.mktemp("dated") / "photos"
    for i in range(60):
        exif_photo(src / ("f%d" % (i % 3)) / ("IMG_%03d.JPG" % i), size=(1600, 1200),
                   original="2019:%02d:%02d 08:00:%02d" % (1 + i % 12, 1 + i % 28, i),
                   make="Make%d" % (i % 4), model="Model %d" % i, color=((37 * i) % 256, (91 * i) % 256, 7))
    return src


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_sidecar(dated_tree, tmp_path):
    ref_out = tmp_path / "ref"
    ref = subprocess.run([sys.executable, SCRIPT, "-d", dated_tree, "-o", ref_out, "-j", "2"],
                         capture_output=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    ref_text = sidecar(ref_out).read_text(encoding="utf-8")
    assert len(ref_text.splitlines()) == 61

    out, meta_file = tmp_path / "out", tmp_path / "t.meta"
    with open(meta_file, "ab") as stdout:
        proc = subprocess.Popen([sys.executable, SCRIPT, "-d", dated_tree, "-o", out, "-j", "2"],
                                stdout=stdout, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until(lambda: os.path.exists(infolog.info_path(out))
               and sidecar(out).read_bytes().count(b"\n") >= 9, 60, "9 info lines")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_lines = sidecar(out).read_bytes().count(b"\n")
    assert 9 <= killed_lines < 61, "really killed mid-run"
    with open(meta_file, "ab") as append:
        resumed = subprocess.run([sys.executable, SCRIPT, "-d", dated_tree, "-o", out, "-j", "2",
                                  "-l", meta_file], stdout=append, stderr=subprocess.PIPE, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert sidecar(out).read_text(encoding="utf-8") == ref_text
    assert len(meta.read_meta(meta_file).entries) == 60


# ---------------------------------------------------------------- photos listed before the sidecar existed

def test_backfill_reads_only_listed_originals_lacking_info(stage1, tmp_path, monkeypatch):
    src, out, meta_file = tmp_path / "src", tmp_path / "thumbs", tmp_path / "t.meta"
    paths = [exif_photo(src / ("p%d.jpg" % i), original="2012:0%d:01 09:00:00" % (i + 1),
                        color=(40 * i, 9, 9)) for i in range(5)]
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    meta_file.write_text(stdout)
    log = meta.read_meta(meta_file)
    # As if an older stage 1 had listed them: no sidecar, except one photo's line kept.
    ref = infolog.read_info(out).by_md5
    keep = [line for line in sidecar(out).read_text(encoding="utf-8").splitlines(True)
            if line.startswith(md5_of(log, paths[0]))]
    sidecar(out).write_text(infolog.HEADER + "".join(keep), encoding="utf-8")
    exif_photo(src / "new.jpg", original="2021:07:07 07:07:07", color=(1, 250, 1))

    # The normal resume opens no listed file and adds info only for the new photo.
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: opened.append(os.fspath(f)) or real_open(f, *a, **k))
    rc, stdout, err = stage1("-d", src, "-o", out, "-j", 1, "-l", meta_file)
    monkeypatch.undo()
    assert rc == 0 and not {str(p) for p in paths} & set(opened)
    assert set(info_of(out)) == {md5_of(log, paths[0]), meta.parse_lines(io.StringIO(stdout)).entries[
        str(src / "new.jpg")]}
    with open(meta_file, "a") as f:
        f.write(stdout)

    # --backfill-info: one original is gone, one was changed since; the other two are read.
    os.remove(paths[1])
    exif_photo(paths[2], original="1999:09:09 09:09:09", color=(0, 0, 0))
    rc, stdout, err = stage1("-d", src, "-o", out, "-j", 1, "-l", meta_file, "--backfill-info")
    assert rc == 0
    assert "process_photos: info backfilled for 2 listed photos, 2 could not be read (original not " \
           "found x1, original changed since it was listed x1)" in err
    info = info_of(out)
    for p in (paths[0], paths[3], paths[4]):
        assert info[md5_of(log, p)] == ref[md5_of(log, p)]
    assert md5_of(log, paths[1]) not in info and md5_of(log, paths[2]) not in info
    assert stdout == ""  # listed paths stay listed: the .meta is not touched


def test_backfill_needs_a_file_list(stage1, tmp_path):
    make_photo(tmp_path / "src" / "a.jpg")
    rc, stdout, err = stage1("-d", tmp_path / "src", "-o", tmp_path / "t", "--backfill-info")
    assert rc == 2 and stdout == ""
    assert err == ["error: --backfill-info needs -l META: it fills in the photos that file lists"]


def test_sidecar_of_another_version_is_refused_before_any_work(stage1, tmp_path):
    make_photo(tmp_path / "src" / "a.jpg")
    out = tmp_path / "t"
    sidecar(out).write_text("md5\twhen\n")
    rc, stdout, err = stage1("-d", tmp_path / "src", "-o", out)
    assert rc == 2 and stdout == "" and len(err) == 1
    assert err[0].startswith("error: cannot use photo info file: %s was not written by this version"
                             % infolog.info_path(out))


def test_a_sidecar_that_cannot_be_written_stops_with_one_error_line(stage1, tmp_path, monkeypatch):
    make_photo(tmp_path / "src" / "a.jpg")
    real_write = os.write

    def full_disk(fd, data):  # the disk fills up when the first record is appended
        if os.path.realpath("/proc/self/fd/%d" % fd) == infolog.info_path(tmp_path / "t"):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    rc, stdout, err = stage1("-d", tmp_path / "src", "-o", tmp_path / "t", "-q")
    assert rc == 1 and stdout == ""  # no .meta line for a photo whose info is not written
    assert err == ["error: cannot write %s: No space left on device" % infolog.info_path(tmp_path / "t")]
