"""Real-browser helpers for tests, benchmarks and recordings: serve a folder with ``http.server`` on
127.0.0.1 (request log kept), drive Debian's headless chromium through selenium, and hover or click a
data point of the map page."""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--hide-scrollbars",
                # WebGL through SwiftShader (no GPU here); chromium warns that the silent fallback is going away.
                "--enable-unsafe-swiftshader")
_REQUEST = re.compile(r'"(?:GET|HEAD) (\S+) HTTP/[\d.]+" (\d{3})')


class BrowserUnavailable(RuntimeError):
    """No usable chromium/chromedriver/selenium here; ``str()`` is the reason to skip with."""


def skip_reason():
    """Why a real-browser run is impossible here, or ``None`` when chromium, chromedriver and selenium exist."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return "%s not found (apt-get install %s)" % (path, package)
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


class Server:
    """A running ``python -m http.server`` on 127.0.0.1; ``url`` ends with ``/``."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.log_file = tempfile.NamedTemporaryFile(prefix="http-server-", suffix=".log", delete=False)
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", str(self.port), "--bind", "127.0.0.1"],
            cwd=self.folder, stdout=self.log_file, stderr=subprocess.STDOUT)
        self.url = "http://127.0.0.1:%d/" % self.port
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(self.url + "?ready", timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("http.server did not start on port %d" % self.port)
                time.sleep(0.05)

    def requests(self):
        """``(path, status)`` of every GET/HEAD served so far, in order (from the server's log)."""
        with open(self.log_file.name, encoding="utf-8", errors="replace") as f:
            return [(m.group(1), int(m.group(2))) for m in _REQUEST.finditer(f.read())]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        try:
            os.unlink(self.log_file.name)
        except OSError:
            pass


@contextmanager
def serve(folder):
    """Serve ``folder`` for the duration of the ``with`` block; yields a :class:`Server`."""
    server = Server(folder)
    try:
        yield server
    finally:
        server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chrome:
    """Headless chromium through selenium, with its own throw-away profile; ``driver`` is the WebDriver."""

    def __init__(self, width=1400, height=1000):
        reason = skip_reason()
        if reason:
            raise BrowserUnavailable(reason)
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="photomap-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in CHROME_FLAGS:
            opts.add_argument(flag)
        opts.add_argument("--user-data-dir=" + self.profile)
        opts.add_argument("--window-size=%d,%d" % (width, height))
        try:
            self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        except Exception as exc:  # selenium raises several types; all mean "no browser here"
            shutil.rmtree(self.profile, ignore_errors=True)
            raise BrowserUnavailable("chromium did not start: %s" % str(exc).splitlines()[0]) from exc

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


@contextmanager
def chrome(width=1400, height=1000):
    """A :class:`Chrome` for the ``with`` block; raises :class:`BrowserUnavailable` with the reason."""
    browser = Chrome(width, height)
    try:
        yield browser.driver
    finally:
        browser.close()


# JS: the plot's view (found by name), and the page position of data point (x, y) in it.
PLOT_VIEW_JS = """
const name = arguments[0];
if (window.Bokeh == null || Bokeh.index == null) return null;
const pv = Bokeh.index.query_one((v) => v.model != null && v.model.name == name && v.frame != null);
"""

DATA_TO_CLIENT_JS = PLOT_VIEW_JS + """
if (pv == null) return null;
const [x, y] = [arguments[1], arguments[2]];
const f = pv.frame.bbox, xr = pv.model.x_range, yr = pv.model.y_range;
const r = pv.canvas.el.getBoundingClientRect();
return [r.left + f.left + (x - xr.start) / (xr.end - xr.start) * f.width,
        r.top + f.top + (yr.end - y) / (yr.end - yr.start) * f.height];
"""

# Scroll the plot fully into the viewport (a notebook page puts it below the fold): mouse events
# dispatched outside the viewport reach nothing.
SCROLL_INTO_VIEW_JS = PLOT_VIEW_JS + """
if (pv == null) return;
const r = pv.canvas.el.getBoundingClientRect();
if (r.top < 0 || r.bottom > window.innerHeight || r.left < 0 || r.right > window.innerWidth)
  pv.canvas.el.scrollIntoView({block: "center", inline: "center"});
"""

PLOT_READY_JS = PLOT_VIEW_JS + """
return pv != null && pv.model.inner_width > 0 && pv.is_idle;
"""

# JS: find elements matching a CSS selector in the document and inside every (nested) shadow root.
DEEP_QUERY_JS = """
const sel = arguments[0], out = [];
function walk(root) {
  for (const el of root.querySelectorAll(sel)) out.push(el);
  for (const el of root.querySelectorAll("*")) if (el.shadowRoot) walk(el.shadowRoot);
}
walk(document);
return out;
"""


def deep_query(driver, selector):
    """All elements matching ``selector``, looking through bokeh's shadow DOM too."""
    return driver.execute_script(DEEP_QUERY_JS, selector)


def deep_read(driver, selector, read):
    """``read`` (a JavaScript expression of ``el``) for each element matching ``selector`` (shadow DOM
    too), found and read in one script: an element the page replaces meanwhile can never be stale."""
    return driver.execute_script(DEEP_QUERY_JS.replace("return out;", "return out.map(new Function('el', "
                                                       "'return (' + arguments[1] + ')'));"), selector, read)


def wait_for_plot(driver, plot_name, timeout=60.0) -> float:
    """Wait until the named bokeh plot has rendered; return the seconds waited."""
    t0 = time.monotonic()
    while not driver.execute_script(PLOT_READY_JS, plot_name):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the bokeh plot %r did not render within %.0fs" % (plot_name, timeout))
        time.sleep(0.02)
    return time.monotonic() - t0


POINT_COLOURS_JS = PLOT_VIEW_JS + """
if (pv == null) return null;
const layer = pv.export("png");  // the plot as drawn (WebGL and canvas layers composited), CSS px x ratio
const r = pv.canvas.el.getBoundingClientRect();
const ratio = layer.pixel_ratio ?? 1;
return arguments[1].map(([cx, cy]) => [...layer.ctx.getImageData(
  Math.round((cx - r.left) * ratio), Math.round((cy - r.top) * ratio), 1, 1).data].slice(0, 3));
"""


def choose_colours(driver, label) -> None:
    """Click the page's colour switch button ``label`` (``islands``, ``folder``, ``year``, ``none``)."""
    buttons = [b for b in deep_query(driver, ".bk-btn") if b.text == label]
    if not buttons:
        raise RuntimeError("no colour switch button %r on the page" % label)
    buttons[0].click()


def labels_shown(driver):
    """The islands' labels drawn on the map now (``[]`` when hidden or none)."""
    return driver.execute_script(
        "const v = Bokeh.index.query_one((v) => v.model != null && v.model.name == 'photomap-labels');"
        "return v && v.model.visible ? [...v.model.source.data.text] : []")


def weights_note(driver):
    """The page's note on the labels' weights, or ``None`` when it shows none."""
    return driver.execute_script(
        "const v = Bokeh.index.query_one((v) => v.model != null && v.model.name == 'photomap-note');"
        "return v && v.model.visible ? v.el.textContent || v.model.text : null")


def point_colours(driver, plot_name, points):
    """The ``[r, g, b]`` drawn at the centre of each data point ``(x, y)`` of the named plot, read
    from the plot's own rendering (bokeh's export), so neither a screenshot nor the window matters."""
    where = [data_to_client(driver, plot_name, float(x), float(y)) for x, y in points]
    return driver.execute_script(POINT_COLOURS_JS, plot_name, where)


def data_to_client(driver, plot_name, x, y):
    """Viewport (CSS pixel) position of data point ``(x, y)`` in the named plot."""
    pos = driver.execute_script(DATA_TO_CLIENT_JS, plot_name, float(x), float(y))
    if pos is None:
        raise RuntimeError("no bokeh plot named %r on the page" % plot_name)
    return pos


def mouse_move(driver, cx, cy) -> None:
    """Move the mouse to viewport position ``(cx, cy)`` (fractional pixels allowed) via CDP."""
    driver.execute_cdp_cmd("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": cx, "y": cy})


def mouse_click(driver, cx, cy) -> None:
    """Left-click at viewport position ``(cx, cy)`` via CDP."""
    for kind in ("mousePressed", "mouseReleased"):
        driver.execute_cdp_cmd("Input.dispatchMouseEvent", {"type": kind, "x": cx, "y": cy,
                                                            "button": "left", "clickCount": 1})


def mouse_drag(driver, points, shift=False) -> None:
    """Press the left button at the first viewport position of ``points``, move through the others and
    release at the last (with Shift held when ``shift``). One WebDriver actions request, so the moves
    follow the press at once: bokeh reads a press held still for a while as a press, not a drag."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.keys import Keys

    actions = ActionBuilder(driver, duration=20)
    (x0, y0), *rest = [(int(round(x)), int(round(y))) for x, y in points]
    if shift:
        actions.key_action.key_down(Keys.SHIFT)
    actions.pointer_action.move_to_location(x0, y0)
    actions.pointer_action.pointer_down()
    for x, y in rest:
        actions.pointer_action.move_to_location(x, y)
    actions.pointer_action.pointer_up()
    if shift:
        actions.key_action.key_up(Keys.SHIFT)
    actions.perform()


def hover_point(driver, plot_name, x, y, dx=0.0, dy=0.0):
    """Move the mouse onto data point ``(x, y)`` (plus ``dx, dy`` pixels); return the viewport position."""
    driver.execute_script(SCROLL_INTO_VIEW_JS, plot_name)
    cx, cy = data_to_client(driver, plot_name, x, y)
    # Arrive from one pixel away so the browser always sees a move, even onto the same spot.
    mouse_move(driver, cx + dx + 1, cy + dy + 1)
    mouse_move(driver, cx + dx, cy + dy)
    return cx + dx, cy + dy
