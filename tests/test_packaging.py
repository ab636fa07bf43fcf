"""The package's shape: the stages import no developer tool and no heavy library, the repository
imports only through the installed package (no sys.path edits, no scripts loaded by file name), and a
stage run inside the test process leaves its globals as they were."""
import json
import os
import re
import subprocess
import sys

from conftest import ROOT, make_photo

# Imported by no module of photomap at import time: the developer tools (selenium, scikit-image and
# photomap_tools itself), and the heavy libraries that only the functions needing them import, so
# that --help and stage 1 start fast.
DEV_TOOLS = ("photomap_tools", "selenium", "skimage", "nbclient", "pytest")
HEAVY = ("torch", "torchvision", "umap", "bokeh", "sklearn", "numba", "pandas")

IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys
import photomap
names = [m.name for m in pkgutil.walk_packages(photomap.__path__, "photomap.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted({k.split(".")[0] for k in sys.modules})}))
"""


def test_importing_every_stage_module_loads_no_dev_tool_or_heavy_library():
    res = subprocess.run([sys.executable, "-c", IMPORT_EVERY_MODULE], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert "photomap.meta" in found["modules"] and "photomap.commands.embeddings" in found["modules"]
    assert [m for m in DEV_TOOLS + HEAVY if m in found["loaded"]] == []


def repository_sources():
    """``(relative path, text)`` of every Python file and notebook in the repository (not the venv)."""
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("output", "out", "__pycache__")]
        for name in files:
            if name.endswith((".py", ".ipynb")):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, ROOT), f.read()


def test_code_imports_through_the_package_only():
    sources = dict(repository_sources())
    assert "photomap/meta.py" in sources and "tests/conftest.py" in sources
    del sources[os.path.join("tests", "test_packaging.py")]  # it spells the patterns out
    path_edit = re.compile(r"sys\.path\s*(\.\s*(insert|append|extend)\b|\[[^\]]*\]\s*=|\s*\+?=)")
    by_file_name = re.compile(r"spec_from_file_location|run_path|SourceFileLoader")
    assert [p for p, text in sources.items() if path_edit.search(text)] == []
    assert [p for p, text in sources.items() if by_file_name.search(text)] == []
    assert [p for p, text in sources.items() if p.startswith("photomap" + os.sep) and
            "photomap_tools" in text] == []


def test_an_in_process_run_leaves_the_process_as_it_found_it(run_main, tmp_path):
    """A stage run in the test process (thumbnails made in-process with -j 1 lift Pillow's pixel limit
    and set the worker's module globals) hands the next test the globals it had before."""
    from PIL import Image

    from photomap.commands import process_photos

    make_photo(tmp_path / "src" / "a.jpg")
    limit = Image.MAX_IMAGE_PIXELS
    before = {name: _contents(module) for name, module in sys.modules.items() if name.startswith("photomap.")}
    run = run_main(process_photos.main, "-d", tmp_path / "src", "-o", tmp_path / "out", "-j", 1, "-q")
    assert run.status == 0 and len(run.out.splitlines()) == 1
    assert Image.MAX_IMAGE_PIXELS == limit and limit is not None
    after = {name: _contents(sys.modules[name]) for name in before}
    assert [name for name in before if after[name] != before[name]] == []


def _contents(module):
    """A module's own globals, containers by their contents (repr), the rest by identity."""
    return {key: repr(value) if type(value) in (dict, list, set) else id(value)
            for key, value in vars(module).items() if not key.startswith("__")}


def test_the_page_scripts_ship_in_the_built_package(tmp_path):
    """The page reads its scripts (photomap/js/*.js) as package data: a wheel must carry every one."""
    import shutil
    import zipfile

    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    keep = {"pyproject.toml", "README.md", "photomap", "photomap_tools"}
    shutil.copytree(ROOT, src, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or (os.path.samefile(folder, ROOT) and n not in keep)])
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "wheel").iterdir()
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("photomap/js/")}
    scripts = {"photomap/js/" + n for n in os.listdir(os.path.join(ROOT, "photomap", "js"))}
    assert "photomap/js/map.js" in scripts and shipped == scripts
