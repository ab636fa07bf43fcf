"""Stage 1 (process_photos.py): thumbnails, the .meta log, resume after a real kill, bad input."""
import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, make_photo, md5_file, wait_until
from photomap import meta, thumbs
from photomap.commands import process_photos

SCRIPT = os.path.join(ROOT, "process_photos.py")
RED, GREEN, BLUE, YELLOW, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255)


# ---------------------------------------------------------------- helpers

@pytest.fixture
def stage1(run_main):
    """``stage1(*args)``: process_photos.py's main in this process; (status, stdout, stderr lines)."""
    return lambda *args: run_main(process_photos.main, *args)


def run_cli(*args, stdout=subprocess.PIPE):
    """Run process_photos.py as a subprocess; returns the CompletedProcess (text mode)."""
    return subprocess.run([sys.executable, SCRIPT] + [str(a) for a in args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, errors="surrogateescape", timeout=60)


def parse(text):
    """.meta text -> MetaLog, asserting that every line is well-formed (stdout carries only .meta)."""
    log = meta.parse_lines(io.StringIO(text))
    assert log.malformed == 0 and not log.ends_mid_line, text
    return log


def thumb(out, md5):
    return os.path.join(out, meta.thumb_name(md5))


def nearest(rgb, palette=(RED, GREEN, BLUE, YELLOW, WHITE)):
    """The colour of ``palette`` closest to ``rgb`` (JPEG blurs colours a little)."""
    return min(palette, key=lambda c: sum((a - b) ** 2 for a, b in zip(rgb, c)))


def at(img, fx, fy):
    """Pixel at fractional position (fx, fy) of ``img``."""
    return img.getpixel((int(fx * (img.width - 1)), int(fy * (img.height - 1))))


def only_thumbnail(out, log, path):
    """The thumbnail image of ``path`` (checks it exists and is an RGB JPEG)."""
    img = Image.open(thumb(out, log.entries[str(path)]))
    assert img.format == "JPEG" and img.mode == "RGB"
    return img


def one_bad_file(stage1, tmp_path, name, content_or_maker, *extra):
    """Run on a folder holding one good photo and one bad file; return (err lines, log, path)."""
    src, out = tmp_path / "src", tmp_path / "out"
    make_photo(src / "good.jpg")
    bad = src / name
    if callable(content_or_maker):
        content_or_maker(bad)
    else:
        bad.write_bytes(content_or_maker)
    rc, stdout, err = stage1("-d", src, "-o", out, "-j", 1, *extra)
    assert rc == 0
    log = parse(stdout)
    assert str(src / "good.jpg") in log.entries  # the run goes on past the bad file
    assert str(bad) not in log.entries
    skipped = [line for line in err if line.startswith("process_photos: skipped")]
    assert len(skipped) == 1 and str(bad) in skipped[0]
    assert len(os.listdir(out)) == 1
    return skipped[0], log, str(bad)


def snapshot(folder):
    """Every path under ``folder`` with its type, mtime and content hash (links not followed)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                digest = md5_file(path)
            state[os.path.relpath(path, folder)] = (st.st_mode, st.st_mtime_ns, st.st_size, digest)
    return state


# ---------------------------------------------------------------- the normal path

def test_thumbnails_lines_and_md5(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_photo(src / "land.jpg", size=(640, 480))
    make_photo(src / "sub" / "port.png", size=(480, 640), color=(10, 200, 10))
    make_photo(src / "small.jpg", size=(100, 50), color=(10, 10, 200))
    rc, stdout, err = stage1("-d", src, "-o", out, "-s", 224, "-j", 1)
    assert rc == 0
    # Deterministic order: sorted names, depth-first.
    assert [line.split("\t")[1] for line in stdout.splitlines()] == [
        str(src / "land.jpg"), str(src / "small.jpg"), str(src / "sub" / "port.png")]
    log = parse(stdout)
    for name, size in [("land.jpg", (224, 168)), ("sub/port.png", (168, 224)), ("small.jpg", (100, 50))]:
        path = src / name
        assert log.entries[str(path)] == md5_file(path)  # md5 of the source file's bytes
        img = only_thumbnail(out, log, path)
        assert img.size == size  # long side = 224, never upscaled
        assert img.quantization[0][0] == 3  # libjpeg's luminance table at quality 90
    assert sorted(os.listdir(out)) == sorted(meta.thumb_name(m) for m in log.entries.values())
    assert err[-1].startswith(
        "process_photos: 3 new thumbnails, 0 duplicates, 0 already listed, 0 failed in ")
    assert err[-1].endswith(" images/s)")


def test_duplicates_share_one_thumbnail_and_each_get_a_line(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_photo(src / "a" / "x.jpg")
    os.makedirs(src / "b")
    shutil.copy(src / "a" / "x.jpg", src / "b" / "x copy.jpg")
    make_photo(src / "c.jpg", color=(0, 0, 250))
    rc, stdout, err = stage1("-d", src, "-o", out, "-j", 2)
    assert rc == 0
    log = parse(stdout)
    assert len(log.entries) == 3
    assert log.entries[str(src / "a" / "x.jpg")] == log.entries[str(src / "b" / "x copy.jpg")]
    assert len(os.listdir(out)) == 2
    assert "2 new thumbnails, 1 duplicates" in err[-1]


def test_uppercase_extensions_and_extension_filter(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_photo(src / "IMG_0001.JPG")
    make_photo(src / "b.JPEG", color=(1, 2, 3))
    make_photo(src / "c.Png", color=(4, 5, 6))
    make_photo(src / "d.TiF", color=(7, 8, 9))
    (src / "notes.txt").write_text("not a photo")
    (src / "jpg").write_text("no extension")
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    assert rc == 0
    assert set(parse(stdout).entries) == {str(src / n) for n in ("IMG_0001.JPG", "b.JPEG", "c.Png", "d.TiF")}
    rc, stdout, _ = stage1("-d", src, "-o", tmp_path / "out2", "-j", 1, "-x", "PNG", ".tif")
    assert set(parse(stdout).entries) == {str(src / "c.Png"), str(src / "d.TiF")}


def test_hidden_files_and_folders_are_skipped(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_photo(src / "seen.jpg")
    make_photo(src / ".hidden.jpg", color=(1, 1, 1))
    make_photo(src / ".thumbnails" / "t.jpg", color=(2, 2, 2))
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    assert rc == 0 and set(parse(stdout).entries) == {str(src / "seen.jpg")}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(stage1, tmp_path, orientation):
    # The upright picture: a 3:2 landscape with four coloured quadrants (no two symmetric).
    upright = np.zeros((80, 120, 3), np.uint8)
    upright[:40, :60], upright[:40, 60:], upright[40:, :60], upright[40:, 60:] = RED, GREEN, BLUE, YELLOW
    # How a camera stores it for each EXIF orientation (EXIF 2.32, tag 0x0112), built with numpy
    # so the test does not borrow Pillow's own table.
    stored = {
        1: upright,
        2: upright[:, ::-1],                       # mirrored left-right
        3: upright[::-1, ::-1],                    # rotated 180
        4: upright[::-1, :],                       # mirrored top-bottom
        5: upright.transpose(1, 0, 2),             # transposed
        6: np.rot90(upright, 1),                   # shown after turning 90 clockwise
        7: upright[::-1, ::-1].transpose(1, 0, 2),  # transversed
        8: np.rot90(upright, -1),                  # shown after turning 90 counter-clockwise
    }[orientation]
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(src / "o.jpg", quality=95, exif=exif)
    rc, stdout, _ = stage1("-d", src, "-o", out, "-s", 60, "-j", 1)
    assert rc == 0
    img = only_thumbnail(out, parse(stdout), src / "o.jpg")
    assert img.size == (60, 40)
    quadrants = [nearest(at(img, fx, fy)) for fy in (0.25, 0.75) for fx in (0.25, 0.75)]
    assert quadrants == [RED, GREEN, BLUE, YELLOW]


def test_cmyk_jpeg(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    rgb = Image.new("RGB", (200, 100), RED)
    rgb.paste(BLUE, (100, 0, 200, 100))
    rgb.convert("CMYK").save(src / "cmyk.jpg", quality=95)
    assert Image.open(src / "cmyk.jpg").mode == "CMYK"
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    img = only_thumbnail(out, parse(stdout), src / "cmyk.jpg")
    assert nearest(at(img, 0.2, 0.5)) == RED and nearest(at(img, 0.8, 0.5)) == BLUE


def test_16bit_grayscale_png_is_scaled_not_clipped(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    arr = np.full((100, 200), 1000, np.uint16)
    arr[:, 100:] = 128 * 257  # mid grey in 16 bits
    Image.fromarray(arr).save(src / "deep.png")
    assert Image.open(src / "deep.png").mode in ("I;16", "I")
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    img = only_thumbnail(out, parse(stdout), src / "deep.png")
    dark, mid = at(img, 0.2, 0.5), at(img, 0.8, 0.5)
    assert all(abs(c - 128) <= 3 for c in mid), mid   # clipping would give 255
    assert all(c <= 8 for c in dark), dark            # 1000/65535 of full scale


def test_rgba_png_is_composited_on_white(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    img = Image.new("RGBA", (200, 100), (0, 0, 0, 0))  # transparent black
    img.paste((255, 0, 0, 255), (0, 0, 100, 100))
    img.save(src / "alpha.png")
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    thumb_img = only_thumbnail(out, parse(stdout), src / "alpha.png")
    assert nearest(at(thumb_img, 0.2, 0.5)) == RED
    assert nearest(at(thumb_img, 0.8, 0.5)) == WHITE


def test_palette_png_with_transparency(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    img = Image.new("P", (200, 100), 0)
    img.putpalette([0, 255, 0, 255, 0, 0] + [0] * 762)  # index 0 green (transparent), 1 red
    img.paste(1, (0, 0, 100, 100))
    img.save(src / "pal.png", transparency=0)
    assert Image.open(src / "pal.png").mode == "P"
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    thumb_img = only_thumbnail(out, parse(stdout), src / "pal.png")
    assert nearest(at(thumb_img, 0.2, 0.5)) == RED
    assert nearest(at(thumb_img, 0.8, 0.5)) == WHITE  # not green


def test_animated_gif_gives_first_frame(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    frames = [Image.new("RGB", (120, 80), c) for c in (RED, BLUE, GREEN)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(src / "anim.gif").n_frames == 3
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    img = only_thumbnail(out, parse(stdout), src / "anim.gif")
    assert img.size == (120, 80) and nearest(at(img, 0.5, 0.5)) == RED


def test_heic(stage1, tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    img = Image.new("RGB", (320, 160), RED)
    img.paste(BLUE, (160, 0, 320, 160))
    try:
        pillow_heif.from_pillow(img).save(str(src / "phone.HEIC"), quality=95)
    except Exception as exc:  # noqa: BLE001 - a wheel without an encoder cannot make the fixture
        pytest.skip("this pillow-heif cannot encode HEIC to make the fixture: %s" % exc)
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    thumb_img = only_thumbnail(out, parse(stdout), src / "phone.HEIC")
    assert thumb_img.size == (224, 112)
    assert nearest(at(thumb_img, 0.2, 0.5)) == RED and nearest(at(thumb_img, 0.8, 0.5)) == BLUE


# ---------------------------------------------------------------- bad input: one stderr line each

def test_zero_byte_jpg(stage1, tmp_path):
    line, log, bad = one_bad_file(stage1, tmp_path, "empty.jpg", b"")
    assert line.endswith(": empty file")
    assert log.errors == {bad: "empty file"}


def test_text_file_named_jpg(stage1, tmp_path):
    line, log, bad = one_bad_file(stage1, tmp_path, "notes.jpg", b"shopping list: milk, eggs\n")
    assert line.endswith(": not an image (cannot identify image file)")
    assert log.errors == {bad: "not an image (cannot identify image file)"}


def test_jpeg_truncated_to_half(stage1, tmp_path):
    def half_jpeg(path):
        make_photo(path, size=(800, 600), color=(30, 60, 90))
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    line, log, bad = one_bad_file(stage1, tmp_path, "half.jpg", half_jpeg)
    assert line.endswith(": truncated image")
    assert log.errors == {bad: "truncated image"}


def _png_header_only(width, height):
    """A PNG whose header claims ``width`` x ``height`` but whose pixel data is junk: it can only
    be skipped by its header, never decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"junk") + chunk(b"IEND", b"")


def test_image_above_default_max_pixels_is_not_decoded(stage1, tmp_path):
    line, log, bad = one_bad_file(stage1, tmp_path, "huge.png", _png_header_only(20000, 20000))
    assert line.endswith(": too large: 400.0 MP > 200 MP limit (--max-pixels)")
    assert log.errors[bad] == "too large: 400.0 MP > 200 MP limit (--max-pixels)"


def test_max_pixels_option(stage1, tmp_path):
    def big(path):
        make_photo(path, size=(1200, 1000))
    line, log, bad = one_bad_file(stage1, tmp_path, "big.jpg", big, "--max-pixels", 1_000_000)
    assert line.endswith(": too large: 1.2 MP > 1 MP limit (--max-pixels)")


def test_max_pixels_stands_in_for_pillows_guard_only_while_reading(capsys, tmp_path, monkeypatch,
                                                                   keep_globals):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's bomb guard, far below the photo
    make_photo(tmp_path / "src" / "a.jpg", size=(640, 480))
    # main itself, not run_main: that one would put the guard back whatever the run did to it.
    rc = process_photos.main(["-d", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "-j", "1"])
    out, err = capsys.readouterr()
    assert rc == 0 and list(parse(out).entries) == [str(tmp_path / "src" / "a.jpg")], err
    assert Image.MAX_IMAGE_PIXELS == 1000, "the in-process run left Pillow's guard as it found it"


def test_file_that_vanishes_between_crawl_and_open(stage1, tmp_path, monkeypatch):
    real_crawl = thumbs.crawl

    def crawl_then_delete(*args, **kwargs):
        for path in real_crawl(*args, **kwargs):
            if path.endswith("gone.jpg"):
                os.remove(path)
            yield path
    monkeypatch.setattr(thumbs, "crawl", crawl_then_delete)
    line, log, bad = one_bad_file(stage1, tmp_path, "gone.jpg", make_photo)
    assert line.endswith(": vanished before it could be read")
    assert log.errors == {bad: "vanished before it could be read"}


def test_worker_never_raises_on_bad_input(tmp_path, keep_globals):
    thumbs.init_worker(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "dir.jpg").mkdir()
    assert thumbs.make_thumbnail(str(tmp_path / "missing.jpg")) == (
        thumbs.FAILED, None, "vanished before it could be read", None)
    assert thumbs.make_thumbnail(str(tmp_path / "empty.jpg")) == (thumbs.FAILED, None, "empty file", None)
    assert thumbs.make_thumbnail(str(tmp_path / "dir.jpg"))[0] == thumbs.FAILED


NASTY_NAMES = ["with space.jpg", "Ünïcödé 日本 📷.jpg", "tab\there.jpg", "new\nline.jpg",
               "carriage\rreturn.jpg", "back\\slash.jpg", "<img src=x onerror=alert(1)>.jpg",
               os.fsdecode(b"latin1-\xe9t\xe9.jpg")]


def test_nasty_names_round_trip(stage1, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    for i, name in enumerate(NASTY_NAMES):
        make_photo(os.path.join(src, name), color=(20 * i, 100, 200 - 20 * i))
    rc, stdout, err = stage1("-d", src, "-o", out, "-j", 2, "-v")
    assert rc == 0
    assert len(stdout.splitlines()) == len(NASTY_NAMES)  # one line per photo, whatever its name
    meta_file = tmp_path / "run.meta"
    meta_file.write_bytes(stdout.encode("utf-8"))
    log = meta.read_meta(meta_file)
    assert log.malformed == 0
    assert set(log.entries) == {os.path.join(src, n) for n in NASTY_NAMES}
    for path, md5 in log.entries.items():
        assert md5 == md5_file(path) and os.path.exists(thumb(out, md5))
    per_file = [line for line in err if line.startswith("process_photos: new ")]
    assert len(per_file) == len(NASTY_NAMES)  # -v: one printable line each, even for "\n" names
    assert "<img src=x onerror=alert(1)>" in stdout  # kept verbatim; escaping HTML is stage 3's job


# ---------------------------------------------------------------- the tree and the output folder

def test_output_folder_inside_source_is_never_crawled(stage1, tmp_path):
    src = tmp_path / "src"
    out = src / "thumbs"
    for i in range(3):
        make_photo(src / ("p%d.jpg" % i), color=(80 * i, 50, 50))
    rc, first, _ = stage1("-d", src, "-o", out, "-j", 1)
    assert rc == 0 and len(first.splitlines()) == 3
    rc, again, _ = stage1("-d", src, "-o", out, "-j", 1)  # fresh, without -l
    assert again == first
    assert not any(str(out) in p for p in parse(again).entries)
    assert len(os.listdir(out)) == 3


def test_symlink_loop_and_symlinked_folder(stage1, tmp_path):
    src, out, elsewhere = tmp_path / "src", tmp_path / "out", tmp_path / "elsewhere"
    make_photo(src / "a" / "photo.jpg")
    make_photo(elsewhere / "far.jpg", color=(9, 9, 9))
    os.symlink(src, src / "a" / "loop")              # back to an ancestor
    os.symlink(src / "self", src / "self")          # a link to itself
    os.symlink(elsewhere, src / "linked")           # a folder outside -d, followed once
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    assert rc == 0
    assert set(parse(stdout).entries) == {str(src / "a" / "photo.jpg"), str(src / "linked" / "far.jpg")}


def test_empty_folder(stage1, tmp_path):
    (tmp_path / "src").mkdir()
    rc, stdout, err = stage1("-d", tmp_path / "src", "-o", tmp_path / "out")
    assert rc == 0 and stdout == ""
    assert err[-1].startswith("process_photos: 0 new thumbnails, 0 duplicates, 0 already listed, 0 failed")


def test_source_tree_is_never_modified(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_photo(src / "a.jpg")
    make_photo(src / "sub" / "b.png", color=(5, 5, 5))
    (src / "bad.jpg").write_bytes(b"junk")
    (src / "empty.jpg").write_bytes(b"")
    (src / ".hidden").write_text("x")
    os.symlink(src, src / "sub" / "loop")
    before = snapshot(src)
    # Let the file system's clock pass every mtime in the snapshot, so that a write would show.
    newest = max(mtime for _, mtime, _, _ in before.values())
    probe = tmp_path / "clock-probe"

    def clock_passed():
        probe.touch()
        return probe.stat().st_mtime_ns > newest

    wait_until(clock_passed, 5, "the file system clock to pass the source tree's mtimes")
    meta_file = tmp_path / "t.meta"
    first = run_cli("-d", src, "-o", out, "-l", meta_file, "-j", 2)
    meta_file.write_text(first.stdout, errors="surrogateescape")
    run_cli("-d", src, "-o", out, "-l", meta_file, "-j", 2, "--retry-errors")
    assert first.returncode == 0 and len(first.stdout.splitlines()) == 4
    assert snapshot(src) == before


# ---------------------------------------------------------------- fatal problems: one error line

def _assert_one_error_line(proc):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


def test_nonexistent_dir(tmp_path):
    proc = run_cli("-d", tmp_path / "nope", "-o", tmp_path / "out")
    line = _assert_one_error_line(proc)
    assert line == "error: photo folder %s does not exist" % (tmp_path / "nope")
    assert not (tmp_path / "out").exists()  # caught before any work


def test_unwritable_output(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "file").write_text("a file, not a folder")
    proc = run_cli("-d", tmp_path / "src", "-o", tmp_path / "file" / "thumbs")
    assert _assert_one_error_line(proc).startswith("error: cannot write to thumbnail folder ")


@pytest.mark.parametrize("bad", [["--bogus"], ["-s", "0"], ["-s", "big"], ["-j", "0"], []])
def test_bad_option(tmp_path, bad):
    args = ["-d", tmp_path] + (["-o", tmp_path / "out"] if bad else []) + bad  # [] = missing -o
    line = _assert_one_error_line(run_cli(*args))
    assert line.startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_help_opens_with_the_two_command_lines():
    proc = run_cli("--help")
    assert proc.returncode == 0
    lines = [line.strip() for line in proc.stdout.split("\n\n")[2].splitlines()]
    assert lines[0] == ("./process_photos.py -d /Volumes/MyStuff -o output/torch_thumbs -s 224 "
                        ">> output/torch_thumbs.meta")
    assert lines[1].endswith("-l output/torch_thumbs.meta | tee -a output/torch_thumbs.meta")


# ---------------------------------------------------------------- resume and durability

def test_missing_file_list_says_fresh_start(stage1, tmp_path):
    make_photo(tmp_path / "src" / "a.jpg")
    rc, stdout, err = stage1("-d", tmp_path / "src", "-o", tmp_path / "out",
                               "-l", tmp_path / "none.meta", "-q")
    assert rc == 0 and len(parse(stdout).entries) == 1
    assert err == ["process_photos: %s not found: starting fresh" % (tmp_path / "none.meta")]


def test_quiet_and_verbose(stage1, tmp_path):
    make_photo(tmp_path / "src" / "a.jpg")
    make_photo(tmp_path / "src" / "b.jpg", color=(1, 1, 1))
    rc, _, err = stage1("-d", tmp_path / "src", "-o", tmp_path / "out", "-q")
    assert rc == 0 and err == []
    rc, _, err = stage1("-d", tmp_path / "src", "-o", tmp_path / "out2", "-v", "-j", 1)
    assert sum(line.startswith("process_photos: new ") for line in err) == 2


def test_resume_skips_listed_paths_without_opening_them(stage1, tmp_path, monkeypatch):
    src, out, meta_file = tmp_path / "src", tmp_path / "out", tmp_path / "t.meta"
    for i in range(4):
        make_photo(src / ("p%d.jpg" % i), color=(60 * i, 0, 0))
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    meta_file.write_text(stdout)
    # Were a listed path opened again, this junk would give an error line.
    (src / "p1.jpg").write_bytes(b"junk now")
    make_photo(src / "p9.jpg", color=(0, 0, 99))
    opened = []
    real = thumbs.make_thumbnail
    monkeypatch.setattr(thumbs, "make_thumbnail", lambda path: opened.append(path) or real(path))
    rc, stdout, err = stage1("-d", src, "-o", out, "-j", 1, "-l", meta_file)
    assert rc == 0
    assert opened == [str(src / "p9.jpg")]
    assert list(parse(stdout).entries) == [str(src / "p9.jpg")]
    assert "1 new thumbnails, 0 duplicates, 4 already listed, 0 failed" in err[-1]


def test_retry_errors(stage1, tmp_path):
    src, out, meta_file = tmp_path / "src", tmp_path / "out", tmp_path / "t.meta"
    src.mkdir()
    (src / "later.jpg").write_bytes(b"")  # not yet copied
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1)
    meta_file.write_text(stdout)
    assert meta.read_meta(meta_file).errors == {str(src / "later.jpg"): "empty file"}
    make_photo(src / "later.jpg")
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1, "-l", meta_file)
    assert rc == 0 and stdout == ""  # an error line is not retried forever
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1, "-l", meta_file, "--retry-errors")
    with open(meta_file, "a") as f:
        f.write(stdout)
    log = meta.read_meta(meta_file)
    assert log.errors == {} and log.entries == {str(src / "later.jpg"): md5_file(src / "later.jpg")}


def test_stray_temporary_files_are_removed(stage1, tmp_path):
    out = tmp_path / "out"
    make_photo(tmp_path / "src" / "a.jpg")
    out.mkdir()
    (out / ".tmp-0123456789abcdef0123456789abcdef.jpg.x1y2").write_bytes(b"half a jpeg")
    (out / "keep.txt").write_text("not ours")
    rc, stdout, err = stage1("-d", tmp_path / "src", "-o", out, "-j", 1)
    assert rc == 0
    made = meta.thumb_name(md5_file(tmp_path / "src" / "a.jpg"))
    assert sorted(os.listdir(out)) == sorted([made, "keep.txt"])
    assert "process_photos: removed 1 temporary files left by an interrupted run" in err


def test_log_cut_mid_line_is_repaired_on_resume(stage1, tmp_path):
    src, out, meta_file = tmp_path / "src", tmp_path / "out", tmp_path / "t.meta"
    for i in range(3):
        make_photo(src / ("p%d.jpg" % i), color=(0, 70 * i, 0))
    rc, full, _ = stage1("-d", src, "-o", out, "-j", 1)
    meta_file.write_text(full[:-12])  # a kill cut the last line short: its path lost 11 characters
    rc, stdout, _ = stage1("-d", src, "-o", out, "-j", 1, "-l", meta_file)
    assert stdout.startswith(meta.CUT_MARKER)
    assert parse(stdout[len(meta.CUT_MARKER):]).entries == {str(src / "p2.jpg"): md5_file(src / "p2.jpg")}
    with open(meta_file, "a") as f:
        f.write(stdout)
    log = meta.read_meta(meta_file)
    assert log.entries == parse(full).entries and log.malformed == 1


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory):
    """~60 photos (plus duplicates and bad files) big enough that a run takes a moment."""
    src = tmp_path_factory.mktemp("tree") / "photos"
    for i in range(60):
        make_photo(src / ("f%d" % (i % 4)) / ("IMG_%03d.JPG" % i), size=(1600, 1200),
                   color=((37 * i) % 256, (91 * i) % 256, (53 * i) % 256), quality=92)
    for i in range(3):
        shutil.copy(src / "f0" / ("IMG_%03d.JPG" % (4 * i)), src / "f3" / ("copy_%d.jpg" % i))
    (src / "f1" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (src / "f2" / "empty.jpg").write_bytes(b"")
    return src


def _thumbnail_bytes(out):
    return {name: (out / name).read_bytes() for name in os.listdir(out)}


def _start_and_wait_for_lines(args, meta_file, min_lines):
    """Start process_photos.py in its own process group, appending to ``meta_file``; return it once
    ``meta_file`` holds ``min_lines`` lines (the test fails if the run ends first or takes 30 s)."""
    with open(meta_file, "ab") as stdout:
        proc = subprocess.Popen([sys.executable, SCRIPT] + [str(a) for a in args], stdout=stdout,
                                stderr=subprocess.PIPE, start_new_session=True)

    def enough_lines():
        lines = meta_file.read_bytes().count(b"\n")
        assert lines >= min_lines or proc.poll() is None, "the run ended after %d lines" % lines
        return lines >= min_lines

    wait_until(enough_lines, 30, "%d .meta lines from the running process_photos.py" % min_lines, 0.005)
    return proc


def test_sigkill_mid_run_then_resume_equals_uninterrupted_run(photo_tree, tmp_path):
    ref_out, ref_meta = tmp_path / "ref", tmp_path / "ref.meta"
    ref = run_cli("-d", photo_tree, "-o", ref_out, "-j", 2)
    assert ref.returncode == 0
    ref_meta.write_text(ref.stdout, errors="surrogateescape")
    ref_log = meta.read_meta(ref_meta)
    assert len(ref_log.entries) == 63 and len(ref_log.errors) == 2

    out, meta_file = tmp_path / "out", tmp_path / "t.meta"
    proc = _start_and_wait_for_lines(["-d", photo_tree, "-o", out, "-j", 2], meta_file, 8)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, like a power cut of the job
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = meta.read_meta(meta_file)
    assert 8 <= len(done.entries) + len(done.errors) < 65  # really killed mid-run

    with open(meta_file, "ab") as append:
        resumed = run_cli("-d", photo_tree, "-o", out, "-j", 2, "-l", meta_file, stdout=append)
    assert resumed.returncode == 0
    log = meta.read_meta(meta_file)
    assert log.entries == ref_log.entries and log.errors == ref_log.errors
    assert log.malformed == 0
    assert _thumbnail_bytes(out) == _thumbnail_bytes(ref_out)  # no temp files, same bytes
    # Every .meta line names a thumbnail that exists (printed only after the rename).
    assert all((out / meta.thumb_name(m)).exists() for m in done.entries.values())


def test_ctrl_c_stops_cleanly_with_status_130(photo_tree, tmp_path):
    out, meta_file = tmp_path / "out", tmp_path / "t.meta"
    proc = _start_and_wait_for_lines(["-d", photo_tree, "-o", out, "-j", 2], meta_file, 5)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    _, err = proc.communicate(timeout=30)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "process_photos: interrupted; resume with -l <the .meta file>" in err
    assert "new thumbnails" in err.splitlines()[-1]
    log = meta.read_meta(meta_file)
    assert log.malformed == 0 and not log.ends_mid_line
    assert all((out / meta.thumb_name(m)).exists() for m in log.entries.values())
