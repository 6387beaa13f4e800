"""End to end in real headless Chromium (Debian's chromium + chromium-driver, via Selenium and
NiceGUI's `screen` fixture). Screenshots go to ``artifacts/screenshots/``.

- an admin's workflow: add a dataset after previewing it, see rows of a subset before
  downloading it, download with a live progress bar, schema and rows, copy every snippet from
  the browser's real clipboard and run it, remove partitions, images in rows, delete, sign in;
- the viewer and the statistics over a subset of ten million rows: a page deep inside it, a
  filter, a refused query, statistics computed and shown;
- a 390 x 844 screen: nothing clipped, the header over no content;
- a login that holds, on a real ``pygestor ui`` process: failures slowed and locked out,
  sessions that survive a restart, a session store created on a fresh machine, no message
  taken from the URL.

The clipboard is the browser's real one: clipboard permissions are granted through the
DevTools protocol and the test reads it back with ``navigator.clipboard.readText()``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium must not look for drivers online

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from sources import write_toy_source

from pygestor import api
from pygestor.config import Settings
from pygestor.manager import Manager
from pygestor.ui.display import DASH

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
BIG_ROWS = 10_000_000


def test_browser_is_installed():
    """`make test` installs Debian's chromium and chromium-driver; without them this fails."""
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), \
        "apt-get install chromium chromium-driver (make test does it)"


# ============================================================================================
# Fixtures and helpers


@pytest.fixture(scope="session")
def nicegui_chrome_options() -> webdriver.ChromeOptions:
    """Headless Chromium that never leaves the machine (flags from TESTING-NOTES.md)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-search-engine-choice-screen",
                 "--proxy-server=http://127.0.0.1:9",  # dead proxy; loopback is never proxied
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture(scope="session")
def nicegui_driver(nicegui_chrome_options):
    from nicegui.testing.screen import Screen

    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)),
                              options=nicegui_chrome_options)
    driver.implicitly_wait(Screen.IMPLICIT_WAIT)
    driver.set_page_load_timeout(15)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def keep_pygestor_modules():
    """NiceGUI's reset drops the modules of page functions from sys.modules; put them back."""
    saved = {k: v for k, v in sys.modules.items() if k == "pygestor" or k.startswith("pygestor.")}
    yield
    sys.modules.update(saved)


@pytest.fixture
def manager(tmp_path: Path):
    settings = Settings.load(data_dir=str(tmp_path / "data"), partition_size="60KB",
                             row_group_size=1000, retries=2, retry_backoff=0.01, env={},
                             source_roots=[str(tmp_path)])
    manager = Manager(settings)
    api.set_manager(manager)
    yield manager
    api.set_manager(None)


@pytest.fixture(scope="session")
def big_data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data_dir holding ``big/default``: ten million rows (an id, a number, a category, a
    time) in row groups of a million, written once per test session."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("big")
    (root / "src").mkdir()
    ids = np.arange(BIG_ROWS, dtype=np.int64)
    pq.write_table(pa.table({
        "id": ids,
        "value": np.round(np.random.default_rng(0).normal(50, 15, BIG_ROWS), 2),
        "label": pa.DictionaryArray.from_arrays(pa.array(ids % 4, pa.int8()),
                                                ["cat", "dog", "bird", "fish"]),
        "seen": pa.array(1_600_000_000_000 + ids * 9_000, pa.timestamp("ms", tz="UTC")),
    }), root / "src" / "big.parquet", row_group_size=1_000_000)
    settings = Settings.load(data_dir=str(root / "data"), row_group_size=1_000_000,
                             partition_size="2GB", env={})
    manager = Manager(settings)
    manager.add_dataset("big", str(root / "src"), pipeline="files", modality="tabular")
    manager.download("big", progress=False)
    return settings.data_dir


class Page:
    """XPath helpers over a driver."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    def xpath(self, path: str) -> WebElement:
        return self.driver.find_element(By.XPATH, path)

    def button(self, label: str, within: str = "") -> WebElement:
        return self.xpath(f"{within}//button[contains(normalize-space(.), '{label}')]")

    def tab(self, label: str) -> None:
        found = self.xpath(f"//div[contains(@class, 'q-tab__label') and "
                           f"starts-with(normalize-space(), '{label}')]")
        self.driver.execute_script("arguments[0].click()", found)

    def choose(self, field: str, option: str) -> None:
        """Pick ``option`` in the select labelled ``field``."""
        found = self.xpath(f"//label[.//div[normalize-space()='{field}']]")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", found)
        found.click()
        self.xpath(f"//div[contains(@class, 'q-menu')]//div[contains(@class, 'q-item') and "
                   f"normalize-space()='{option}']").click()

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def shot(self, name: str, full: bool = True, height: int | None = None) -> None:
        """A screenshot of the whole page (``full``), the window, or its top ``height`` px."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        time.sleep(0.2)  # let transitions settle
        size = self.driver.get_window_size()
        if height:
            self.driver.set_window_size(size["width"], height)
            self.driver.save_screenshot(str(SHOTS / f"{name}.png"))
            self.driver.set_window_size(size["width"], size["height"])
            return
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        if full and height > size["height"]:  # the whole page, not only the window
            self.driver.set_window_size(size["width"], min(height + 40, 3000))
        self.driver.save_screenshot(str(SHOTS / f"{name}.png"))
        if full and height > size["height"]:
            self.driver.set_window_size(size["width"], size["height"])


def dialog() -> str:
    return "//div[contains(@class, 'q-dialog')]"


def wait(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ============================================================================================
# An admin's workflow


def test_admin_workflow_in_chromium(screen, manager, tmp_path):
    from test_snippets import clean_env, run_snippet

    source = write_toy_source(tmp_path / "toy-src")
    driver = screen.selenium
    page = Page(driver)
    for old in SHOTS.glob("*.png"):
        old.unlink()

    # --- the empty catalog, then the add dialog: preview first, then add --------------------
    screen.open("/")
    origin = screen.url
    driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    screen.should_contain("No datasets yet")
    page.shot("01-empty-catalog")
    page.button("Add dataset").click()
    screen.should_contain("Add a dataset")
    page.xpath("//input[@aria-label='Name']").send_keys("toy")
    page.xpath("//input[@aria-label='Source URL']").send_keys(str(source))
    page.button("Preview", within=dialog()).click()
    screen.should_contain("Would register toy: 2 subsets, 4 partitions")
    screen.should_contain("test 0")  # the first rows, read from the source
    assert manager.catalog.names() == [], "a preview writes nothing"
    page.shot("02-add-dialog-preview")
    page.button("Add dataset", within=dialog()).click()

    # --- the dataset page -------------------------------------------------------------------
    screen.should_contain("About this dataset")
    assert manager.catalog.names() == ["toy"]
    assert driver.current_url == f"{origin}/dataset/toy"
    screen.should_contain(str(source))
    page.shot("03-dataset")

    # --- before downloading: rows straight from the source -----------------------------------
    page.xpath("//a[normalize-space()='train']").click()
    screen.should_contain("Partitions (3)")
    page.tab("Rows")
    screen.should_contain("read straight from the source")
    screen.should_contain("sample 7, with a comma")
    assert not any(p.downloaded for _, p in manager.dataset("toy").partitions)
    page.shot("04-rows-before-download")
    page.tab("Partitions")
    download_with_live_progress(screen, page, manager)

    # --- schema, rows, snippets copied from the browser and run ------------------------------
    page.tab("Schema")
    screen.should_contain("4 columns")
    for name, kind in (("id", "int64"), ("text", "string"), ("score", "double")):
        page.xpath(f"//tr[td[normalize-space()='{name}'] and td[normalize-space()='{kind}']]")
    page.shot("07-schema")
    page.tab("Rows")
    screen.should_contain(f"rows 1{DASH}25 of 3,000")
    screen.should_contain("sample 7, with a comma")
    page.shot("08-rows")
    page.tab("Code")
    from pygestor.snippets import snippets

    offered = snippets("toy/train", manager.settings)
    titles = {"load": "pandas DataFrame", "iter_batches": "Stream batches",
              "torch": "PyTorch DataLoader", "cli": "Command line"}
    for kind, title in titles.items():
        copy = page.xpath(f"//div[contains(@class, 'pg-snippet')][.//div[normalize-space()="
                          f"'{title}']]//button[contains(normalize-space(.), 'Copy')]")
        driver.execute_script("arguments[0].click()", copy)  # toasts may cover it
        screen.should_contain(f"Copied the {title} snippet")
        copied = driver.execute_async_script(
            "const done = arguments[0];"
            "navigator.clipboard.readText().then(done, e => done('ERROR ' + e));")
        assert copied == offered[kind]
        output = run_snippet(kind, copied, tmp_path / "copied" / kind, clean_env())
        assert kind != "load" or "sample 0, with a comma" in output
    page.shot("09-code-copied")
    remove_two_partitions(screen, page, manager)
    images_rows_and_delete(screen, page, manager, tmp_path, origin)


def download_with_live_progress(screen, page: Page, manager: Manager) -> None:
    driver = page.driver
    original = manager.download

    def slow_download(ref, partitions=None, force=False, *, progress=True, cancel=None, **kw):
        def slowly(event):
            progress(event)
            time.sleep(0.4)  # a remote source would take this long; the bar must move live
        return original(ref, partitions, force, progress=slowly, cancel=cancel, max_workers=1)
    manager.download = slow_download
    driver.execute_script("""
        window.pgSeen = [];
        setInterval(() => {
          const bar = document.querySelector('.q-linear-progress[role=progressbar]');
          if (bar && bar.offsetParent !== null) {
            const value = bar.getAttribute('aria-valuenow');
            if (window.pgSeen[window.pgSeen.length - 1] !== value) window.pgSeen.push(value);
          }
        }, 25);""")
    page.button("Download subset").click()
    wait(lambda: any(0 < float(v) < 1 for v in driver.execute_script("return window.pgSeen")),
         what="a partly filled progress bar")
    page.shot("05-downloading")
    screen.should_contain("Downloaded toy/train")
    wait(lambda: driver.execute_script("return window.pgSeen")[-1] == "1", what="a full bar")
    seen = [float(v) for v in driver.execute_script("return window.pgSeen")]
    assert seen == sorted(seen) and seen[-1] == 1.0, seen
    assert all(p.downloaded for p in manager.dataset("toy").subsets["train"].partitions)
    screen.should_contain("3 / 3 partitions")
    manager.download = original
    page.shot("06-downloaded")


def remove_two_partitions(screen, page: Page, manager: Manager) -> None:
    page.tab("Partitions")
    for name in ("part-00000.parquet", "part-00002.parquet"):
        page.xpath(f"//tr[td[normalize-space()='{name}']]//div[@role='checkbox']").click()
    page.button("Remove selected (2)").click()
    screen.should_contain("Remove 2 partitions of toy/train?")
    page.shot("10-confirm-remove")
    page.button("Remove", within=dialog()).click()
    screen.should_contain("Removed 2 partitions of toy/train")
    wait(lambda: {p.name: p.downloaded for p in manager.dataset("toy").subsets["train"]
                  .partitions} == {"part-00000.parquet": False, "part-00001.parquet": True,
                                   "part-00002.parquet": False}, what="two partitions removed")
    not_downloaded = "//div[contains(@class, 'q-badge') and normalize-space()='Not downloaded']"
    wait(lambda: len(page.driver.find_elements(By.XPATH, not_downloaded)) == 2,
         what="the table showing two partitions not downloaded")
    page.shot("11-removed-two")


def images_rows_and_delete(screen, page: Page, manager: Manager, tmp_path: Path,
                           origin: str) -> None:
    from test_ui import write_media_source

    driver = page.driver
    manager.add_dataset("media/thumbnails", str(write_media_source(tmp_path)), pipeline="files",
                        modality="image", description="Thumbnails with captions")
    manager.download("media/thumbnails", progress=False)
    screen.open("/dataset/media/thumbnails?subset=default")
    page.tab("Rows")
    wait(lambda: len(driver.find_elements(
        By.XPATH, "//table//img[starts-with(@src, 'data:image/png')]")) >= 20, what="images")
    images = driver.find_elements(By.XPATH, "//table//img[starts-with(@src, 'data:image/png')]")
    screen.should_load_image(images[0])
    caption = "//td[contains(., 'caption 1 very long')]"
    assert "…" in page.xpath(caption).text
    page.xpath(f"{caption}//a[normalize-space()='more']").click()  # unfold a long text
    wait(lambda: "…" not in page.xpath(caption).text and "less" in page.xpath(caption).text,
         what="the long caption unfolded")
    page.shot("12-rows-images")
    page.tab("Schema")
    screen.should_contain("struct (2 fields)")
    screen.open("/")
    screen.should_contain("Storage usage")
    page.shot("13-datasets")

    screen.open("/dataset/toy")
    page.button("Delete dataset").click()
    screen.should_contain("Delete dataset “toy”?")
    page.button("Delete dataset", within=dialog()).click()
    screen.should_contain("Deleted toy and its data")
    assert driver.current_url == f"{origin}/", "back on the datasets page, nothing in the URL"
    assert manager.catalog.names() == ["media/thumbnails"]
    assert not Path(manager.partition_path("toy", "train", "part-00001.parquet")).exists()
    page.shot("14-after-delete")

    locked = Manager(Settings.load(data_dir=manager.settings.data_dir, env={},
                                   ui_password="open sesame"))
    api.set_manager(locked)
    screen.open("/dataset/media/thumbnails")
    assert "/login?redirect_to=" in driver.current_url
    screen.should_contain("This Pygestor server needs its password.")
    page.xpath("//input[@aria-label='Password']").send_keys("open sesame")
    page.button("Sign in").click()
    screen.should_contain("About this dataset")  # back where the browser was going
    assert driver.current_url == f"{origin}/dataset/media/thumbnails"


# ============================================================================================
# Ten million rows


def test_viewer_and_statistics_over_ten_million_rows(screen, big_data_dir):
    api.set_manager(Manager(Settings.load(data_dir=big_data_dir, env={})))
    driver = screen.selenium
    page = Page(driver)
    try:
        screen.open("/dataset/big?subset=default")
        page.tab("Rows")
        screen.should_contain(f"rows 1{DASH}25 of 10,000,000 (stored order)")
        number = page.xpath("//*[contains(@class, 'pg-page-number')]//input")
        number.send_keys(Keys.CONTROL, "a")
        number.send_keys("300000", Keys.ENTER)  # a page deep inside: row groups, not a scan
        screen.should_contain(f"rows 7,499,976{DASH}7,500,000 of 10,000,000")
        cells = [c.text for c in driver.find_elements(By.XPATH, "//tbody/tr[1]/td")]
        assert cells[:2] == ["7,499,975", "7499975"], cells

        page.choose("Column", "label")
        page.xpath("//input[@aria-label='Value']").send_keys("dog")
        page.button("Add filter").click()
        screen.should_contain("2,500,000 matching rows")
        page.choose("Sort by", "value")
        page.xpath("//div[contains(@class, 'q-btn-toggle')]//button[.//span[text()='desc']]") \
            .click()
        wait(lambda: "2,500,000 matching rows" in page.text() and
             page.xpath("//tbody/tr[1]/td[4]").text == "dog", what="sorted, filtered")
        shown = [float(c.text) for c in driver.find_elements(By.XPATH, "//tbody/tr/td[3]")]
        assert shown == sorted(shown, reverse=True) and len(shown) == 25
        page.shot("20-viewer-filtered-sorted", full=False)

        where = page.xpath("//input[contains(@placeholder, 'SQL condition')]")
        where.send_keys("1=1; DROP TABLE data", Keys.ENTER)
        screen.should_contain("';' is not allowed")
        page.shot("21-viewer-refused-query", full=False)

        page.tab("Statistics")
        page.button("Compute statistics").click()
        screen.should_contain("Computed the column statistics of big/default")
        wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".pg-bars > div")) >= 30,
             what="histograms")
        assert len(driver.find_elements(By.CSS_SELECTOR, ".pg-top .bar")) == 4, "4 labels"
        screen.open("/dataset/big?subset=default")  # stored with the record: shown again
        page.tab("Statistics")
        screen.should_contain("10,000,000 rows · computed")
        wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".pg-bars > div")) >= 30,
             what="histograms")
        page.shot("22-statistics", height=720)
    finally:
        api.set_manager(None)


# ============================================================================================
# Small screens


#: what must hold on every page and tab: no card or panel wider than itself (content that
#: cannot be reached), none scrolled sideways, the page no wider than the screen, and the
#: header's content inside the header, above the page's content
FITS_JS = """
const out = {page: document.documentElement.scrollWidth, screen: window.innerWidth,
             clipped: []};
for (const el of document.querySelectorAll('.pg-card, .q-tab-panels, .q-tab-panel')) {
  if (el.offsetParent && (el.scrollWidth > el.clientWidth + 1 || el.scrollLeft > 0))
    out.clipped.push([el.className.toString().slice(0, 50), el.scrollWidth, el.clientWidth,
                      el.scrollLeft]);
}
const header = document.querySelector('.q-header');
out.header = header.getBoundingClientRect().bottom;
out.headerContent = Math.max(...[...header.querySelectorAll('*')].map(
  e => e.getBoundingClientRect()).filter(r => r.width && r.height).map(r => r.bottom));
out.content = document.querySelector('.q-page').getBoundingClientRect().top;
return out;"""


def test_small_screen_content_fits(screen, manager, tmp_path):
    from test_ui import write_media_source

    manager.add_dataset("toy", str(write_toy_source(tmp_path / "toy-src")), pipeline="files")
    manager.download("toy/train", progress=False)
    manager.add_dataset("media", str(write_media_source(tmp_path)), pipeline="files")
    manager.download("media", progress=False)
    driver = screen.selenium
    page = Page(driver)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    try:
        views = [("/", None), ("/dataset/toy", None)] + [
            ("/dataset/toy?subset=train", tab) for tab in
            ("Partitions", "Rows", "Statistics", "Schema", "Code")] + [
            ("/dataset/media?subset=default", "Rows")]
        for path, tab in views:
            screen.open(path)
            wait(lambda: driver.execute_script("return !!document.querySelector('.pg-page')"),
                 what=f"{path}")
            if tab:
                page.tab(tab)
            time.sleep(0.6)
            found = driver.execute_script(FITS_JS)
            where = f"{path} {tab or ''}"
            assert found["page"] <= found["screen"] == 390, (where, found)
            assert not found["clipped"], (where, found)
            assert found["headerContent"] <= found["header"] <= found["content"], (where, found)
            page.shot(f"30-small-{path.strip('/').replace('/', '-').replace('?', '-') or 'home'}"
                      f"{'-' + tab.lower() if tab else ''}", full=False)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


# ============================================================================================
# A login that holds, on a real `pygestor ui` process

#: starts `pygestor ui` with quick failure delays and a lockout after three failures
LAUNCHER = ("import sys\n"
            "from pygestor.ui import auth\n"
            "auth.FAILURE_DELAY, auth.MAX_FAILURES = 0.05, 3\n"
            "from pygestor.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ui_process(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Starts (and restarts) `pygestor ui` with a password on a fresh machine's cache folder;
    yields a function that (re)starts it and returns its address. Its stderr is kept."""
    port, started = free_port(), []
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYGESTOR_", "NICEGUI_", "PYTEST_"))}  # NiceGUI serves no test
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "fresh-cache"),
               PYGESTOR_UI_PASSWORD="correct horse battery")
    data = Manager(Settings.load(data_dir=str(tmp_path / "data"), env={}))
    data.add_dataset("production-db", str(write_toy_source(tmp_path / "src")), pipeline="files")

    def start() -> str:
        if started:
            started[-1].terminate()
            started[-1].wait(timeout=20)
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "--data-dir", str(tmp_path / "data"), "ui",
             "--port", str(port)], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        started.append(process)
        wait(lambda: socket.create_connection(("127.0.0.1", port), 0.2).close() is None,
             timeout=30, what="the server")
        return f"http://127.0.0.1:{port}"

    yield start
    logs = []
    for process in started:
        process.terminate()
        logs.append(process.communicate(timeout=20)[1])
    for stderr in logs:
        assert "FileNotFoundError" not in stderr and "Traceback" not in stderr, stderr
    assert "failed sign-in to the web UI from 127.0.0.1 (3 in a row); locked out" in logs[0]


def test_login_holds_across_restarts(nicegui_driver, ui_process, tmp_path):
    driver = nicegui_driver
    page = Page(driver)
    driver.delete_all_cookies()
    url = ui_process()
    driver.get(f"{url}/")
    for attempt in range(3):
        page.xpath("//input[@aria-label='Password']").send_keys(f"guess {attempt}", Keys.ENTER)
        wait(lambda: "Wrong password" in page.text(), what="a failure")
        wait(lambda: page.button("Sign in").is_enabled(), what="the answer")
    wait(lambda: "Too many failed sign-ins" in page.text(), what="locked out")
    page.xpath("//input[@aria-label='Password']").send_keys("correct horse battery", Keys.ENTER)
    time.sleep(0.5)
    assert "/login" in driver.current_url, "locked out: even the right password waits"
    page.shot("40-locked-out", full=False)

    url = ui_process()  # a restart forgets the lockout
    driver.get(f"{url}/")
    page.xpath("//input[@aria-label='Password']").send_keys("correct horse battery", Keys.ENTER)
    wait(lambda: "Datasets" in page.text() and "/login" not in driver.current_url,
         what="signed in")
    folder = tmp_path / "fresh-cache" / "pygestor" / "ui-sessions"
    assert folder.is_dir() and oct(folder.stat().st_mode & 0o777) == "0o700"
    from pygestor.ui.auth import SESSION_KEY

    wait(lambda: any(SESSION_KEY in f.read_text() for f in folder.iterdir() if f.is_file()),
         what="the session written to disk")  # NiceGUI writes it in the background

    url = ui_process()  # the session survives a restart
    driver.get(f"{url}/dataset/production-db")
    wait(lambda: "About this dataset" in page.text(), what="still signed in")
    driver.get(f"{url}/?deleted=production-db&data=1")
    wait(lambda: "production-db" in page.text(), what="the datasets page")
    time.sleep(0.8)
    assert "Deleted" not in page.text(), "no message is taken from the URL"


def test_jobs_are_seen_and_cancelled_from_every_browser(screen, manager, tmp_path,
                                                        slow_source, nicegui_chrome_options):
    """A download started by the command line shows in two browser contexts and after a
    reload, its progress moves, and a browser's cancel ends the command; deleting the dataset
    in the browser while the command downloads cancels it and leaves nothing."""
    from test_jobs import World

    world = World(tmp_path, slow_source)
    world.data_dir = Path(manager.settings.data_dir)
    world.env["PYGESTOR_DATA_DIR"] = str(world.data_dir)
    world.add()
    driver = screen.selenium
    other = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=nicegui_chrome_options)
    try:
        download = world.start("download", "toy")
        job = world.wait_for_job("download")
        screen.open("/")
        other.get(screen.url + "/")
        progress = {}
        for browser in (driver, other):
            card = _job_element(browser, job["id"])
            assert "download toy" in card.text and f"/ {job['total']}" in card.text
            progress[browser] = _done(card)
        driver.refresh()
        _wait_until(lambda: _done(_job_element(driver, job["id"])) > progress[driver],
                    "the progress to move after a reload")
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / "17-jobs-panel.png"))
        first_button = _job_element(other, job["id"]).find_element(By.TAG_NAME, "button")
        assert "Cancel" in first_button.text
        first_button.click()
        _, err = download.communicate(timeout=30)
        assert download.returncode != 0 and "cancelled" in err
        _wait_until(lambda: not other.find_elements(By.CSS_SELECTOR, "[data-testid=job]"),
                    "the cancelled job to leave the panel")

        download = world.start("download", "toy")
        world.wait_for_job("download")
        screen.open("/dataset/toy")
        driver.find_element(By.XPATH, "//button[contains(., 'Delete dataset')]").click()
        screen.should_contain("will be cancelled first")
        driver.find_element(By.XPATH, "//div[contains(@class, 'q-dialog')]"
                                      "//button[contains(., 'Delete dataset')]").click()
        screen.should_contain("Deleted toy")
        _, err = download.communicate(timeout=30)
        assert download.returncode != 0 and "cancelled" in err
        left = [p for p in world.data_dir.rglob("*") if p.is_file() and
                not p.relative_to(world.data_dir).as_posix().startswith("_pygestor/")]
        assert left == [] and manager.catalog.names() == []
    finally:
        other.quit()


def _job_element(browser: webdriver.Chrome, job_id: str) -> WebElement:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = browser.find_elements(By.CSS_SELECTOR, f"[data-testid=job][data-job='{job_id}']")
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not shown")


def _done(card: WebElement) -> int:
    import re

    return int(re.search(r"(\d+) / \d+", card.text).group(1))


def _wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # the page re-renders between reads
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_failed_partition_is_shown_and_retried_in_chromium(screen, manager, tmp_path):
    """The admin console tells the truth: a partition whose source file is missing shows as
    failed, with its error and its source; "Retry failed" fetches it once the file is back;
    "Verify" reports what it found."""
    source = write_toy_source(tmp_path / "toy-src")
    manager.add_dataset("toy", str(source), pipeline="files")
    shard, away = source / "train" / "shard-1.csv", tmp_path / "shard-1.csv.away"
    shard.rename(away)
    with pytest.raises(Exception, match="failed"):
        manager.download("toy/train", progress=False)
    page = Page(screen.selenium)
    screen.open("/dataset/toy?subset=train")
    wait(lambda: page.driver.find_elements(By.CSS_SELECTOR, "[data-testid=partition-error]"),
         what="a failed partition")
    error = page.driver.find_element(By.CSS_SELECTOR, "[data-testid=partition-error]").text
    assert "shard-1.csv is gone from the source" in error
    screen.should_contain("from ")
    page.shot("18-failed-partition")
    away.rename(shard)
    page.button("Retry failed").click()
    wait(lambda: all(p.downloaded for p in manager.dataset("toy").subsets["train"].partitions),
         what="the retried partitions")
    screen.open("/dataset/toy")
    page.button("Verify").click()
    screen.should_contain("problem(s)")
    assert "0 problem(s)" in page.text()
