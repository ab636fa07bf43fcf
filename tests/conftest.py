"""Shared test helpers: generated photos, md5 of a file, offline random-init weights, a command's ``main``
run in this process (output captured, globals restored), and ``wait_until`` for events."""
import hashlib
import os
import sys
import time
import types
from contextlib import contextmanager
from typing import NamedTuple

import pytest

from photomap_tools import synthetic

# The repository root, where the three commands are (for the tests that run them as users do).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# File name torchvision's ResNet18_Weights.IMAGENET1K_V1 is cached under in $TORCH_HOME/hub/checkpoints.
RESNET18_CHECKPOINT = "resnet18-f37072fd.pth"


def make_photo(path, size=(640, 480), color=(200, 120, 40), mode="RGB", fmt=None, pattern=True, **save):
    """Write a small generated photo at ``path`` (a gradient plus a colour block) and return the path."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    if pattern:
        draw = ImageDraw.Draw(img)
        draw.rectangle([w // 8, h // 8, w // 2, h // 2], fill=tuple(color))
        draw.ellipse([w // 2, h // 3, w - w // 10, h - h // 10], fill=tuple(255 - c for c in color))
    if mode != "RGB":
        img = img.convert(mode)
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    img.save(path, fmt, **save)
    return path


def md5_file(path) -> str:
    """The md5 (hex) of the bytes of the file at ``path``."""
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def wait_until(condition, timeout, what, interval=0.02):
    """Call ``condition()`` until it returns something truthy, and return that; once ``timeout`` seconds
    have passed, fail the test saying it waited for ``what`` (and what it saw last)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out after %gs waiting for %s (last seen: %.200r)" % (timeout, what, value),
                        pytrace=False)
        time.sleep(interval)


# ------------------------------------------------------------------ in-process runs

class Run(NamedTuple):
    """What an in-process ``main`` gave: exit status, stdout text and stderr lines."""
    status: int
    out: str
    err: list


@contextmanager
def restored_globals():
    """Put back, on leaving, the process-wide settings a stage changes in the process that runs it:
    Pillow's pixel limit, the SIGINT handler, and every global of the photomap modules (a dict, list
    or set changed in place gets its old contents back)."""
    import signal

    from PIL import Image

    pixels, sigint = Image.MAX_IMAGE_PIXELS, signal.getsignal(signal.SIGINT)
    saved = {name: _module_state(module) for name, module in list(sys.modules.items())
             if name == "photomap" or name.startswith("photomap.")}
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = pixels
        signal.signal(signal.SIGINT, sigint)
        for name, state in saved.items():
            _restore_module(sys.modules[name], state)


def _module_state(module):
    """``{name: (value, copy of its contents or None)}`` of a module's own globals (not ``__dunder__``)."""
    return {key: (value, value.copy() if type(value) in (dict, list, set) else None)
            for key, value in vars(module).items() if not key.startswith("__")}


def _restore_module(module, state):
    names = vars(module)
    # A global the run added goes; a submodule it imported stays an attribute of its package.
    for key in [k for k, v in names.items() if not k.startswith("__") and k not in state
                and not isinstance(v, types.ModuleType)]:
        del names[key]
    for key, (value, contents) in state.items():
        names[key] = value
        if contents is not None and not _same(value, contents):
            value.clear()
            (value.extend if isinstance(value, list) else value.update)(contents)


def _same(a, b):
    try:
        return bool(a == b)
    except ValueError:  # numpy arrays inside: their == is element-wise
        return False


@pytest.fixture
def run_main(capsys):
    """``run_main(main, *args)``: a command's ``main`` on ``args`` (made strings) in this process;
    returns a :class:`Run` with only its own output, and leaves the process's globals as they were."""
    def run(main, *args):
        capsys.readouterr()
        with restored_globals():
            status = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return Run(status, out, err.splitlines())
    return run


@pytest.fixture
def keep_globals():
    """For a test that calls a stage's set-up directly: the globals it changes are put back after."""
    with restored_globals():
        yield


# ------------------------------------------------------------------ offline weights

@pytest.fixture(scope="session")
def random_weights(tmp_path_factory):
    """A random-init (seeded) resnet18 state dict saved to a file, for offline tests of stage 2."""
    return synthetic.random_weights(tmp_path_factory.mktemp("weights") / "resnet18-random.pth")


@pytest.fixture
def torch_home(random_weights, tmp_path, monkeypatch):
    """A $TORCH_HOME whose hub cache holds the random weights under torchvision's own file name,
    so the default (pretrained) loading path runs for real but offline."""
    home = tmp_path / "torch_home"
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    os.symlink(random_weights, ckpt / RESNET18_CHECKPOINT)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def driver(request):
    """A headless chromium (``photomap_tools.browser.chrome``) shared by one test module, its window
    ``WINDOW = (width, height)`` where the module sets one; the module's tests are skipped, saying
    why, where there is no real browser."""
    from photomap_tools import browser

    reason = browser.skip_reason()
    if reason:
        pytest.skip("no real browser: " + reason)
    try:
        with browser.chrome(*getattr(request.module, "WINDOW", ())) as d:
            yield d
    except browser.BrowserUnavailable as exc:
        pytest.skip("no real browser: %s" % exc)
