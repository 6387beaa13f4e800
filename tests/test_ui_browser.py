"""End to end in real headless Chromium (Debian's chromium + chromium-driver, via Selenium and
NiceGUI's `screen` fixture): add a dataset from a folder, download a subset while the progress
bar moves, look at its schema and sample rows, copy a snippet, remove two partitions, delete
the dataset. Screenshots go to ``artifacts/screenshots/``.

The clipboard is the browser's real one: clipboard permissions are granted through the
DevTools protocol and the test reads it back with ``navigator.clipboard.readText()``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium must not look for drivers online

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from sources import write_toy_source

from pygestor.config import Settings
from pygestor.manager import Manager
from pygestor.ui import app as ui_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"



def test_browser_is_installed():
    """`make test` installs Debian's chromium and chromium-driver; without them this fails."""
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), \
        "apt-get install chromium chromium-driver (make test does it)"


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
    ui_app.set_manager(manager)
    yield manager
    ui_app.set_manager(None)


def test_admin_workflow_in_chromium(screen, manager, tmp_path):
    from test_ui import write_media_source

    source = write_toy_source(tmp_path / "toy-src")
    driver = screen.selenium
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()

    def shot(name: str) -> None:
        time.sleep(0.2)  # let transitions settle
        height = driver.execute_script("return document.documentElement.scrollHeight")
        if height > 1000:  # the whole page, not only the window
            driver.set_window_size(1400, min(height + 40, 3000))
        driver.save_screenshot(str(SHOTS / f"{name}.png"))
        if height > 1000:
            driver.set_window_size(1400, 1000)

    def xpath(path: str) -> WebElement:
        return driver.find_element(By.XPATH, path)

    def button(label: str, within: str = "") -> WebElement:
        return xpath(f"{within}//button[contains(normalize-space(.), '{label}')]")

    def dialog() -> str:
        return "//div[contains(@class, 'q-dialog')]"

    def tab(label: str) -> None:
        xpath(f"//div[contains(@class, 'q-tab__label') and normalize-space()='{label}']").click()

    def wait(condition, timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def train_parts() -> dict[str, bool]:
        return {p.name: p.downloaded for p in manager.dataset("toy").subsets["train"].partitions}

    # --- the empty catalog, then the add dialog -------------------------------------------
    screen.open("/")
    origin = screen.url
    driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    screen.should_contain("No datasets yet")
    shot("01-empty-catalog")
    button("Add dataset").click()
    screen.should_contain("Add a dataset")
    xpath("//input[@aria-label='Name']").send_keys("toy")
    xpath("//input[@aria-label='Source URL']").send_keys(str(source))
    shot("02-add-dialog")
    button("Add dataset", within=dialog()).click()

    # --- the dataset page -------------------------------------------------------------------
    screen.should_contain("About this dataset")
    assert manager.catalog.names() == ["toy"]
    assert driver.current_url == f"{origin}/dataset/toy"
    screen.should_contain(str(source))
    shot("03-dataset")

    # --- download a subset with a live progress bar ----------------------------------------
    original = manager.download

    def slow_download(ref, partitions=None, force=False, *, progress=True, cancel=None, **kw):
        def slowly(event):
            progress(event)
            time.sleep(0.4)  # a remote source would take this long; the bar must move live
        return original(ref, partitions, force, progress=slowly, cancel=cancel, max_workers=1)
    manager.download = slow_download

    xpath("//a[normalize-space()='train']").click()
    screen.should_contain("Partitions (3)")
    driver.execute_script("""
        window.pgSeen = [];
        setInterval(() => {
          const bar = document.querySelector('.q-linear-progress[role=progressbar]');
          if (bar && bar.offsetParent !== null) {
            const value = bar.getAttribute('aria-valuenow');
            if (window.pgSeen[window.pgSeen.length - 1] !== value) window.pgSeen.push(value);
          }
        }, 25);""")
    button("Download subset").click()
    wait(lambda: any(0 < float(v) < 1 for v in driver.execute_script("return window.pgSeen")),
         what="a partly filled progress bar")
    shot("04-downloading")
    screen.should_contain("Downloaded toy/train")
    wait(lambda: driver.execute_script("return window.pgSeen")[-1] == "1", what="a full bar")
    seen = [float(v) for v in driver.execute_script("return window.pgSeen")]
    assert seen == sorted(seen) and seen[-1] == 1.0, seen
    assert all(train_parts().values())
    screen.should_contain("3 / 3 partitions")
    shot("05-downloaded")

    # --- schema and sample rows ------------------------------------------------------------
    tab("Schema")
    screen.should_contain("4 columns")
    for name, kind in (("id", "int64"), ("text", "string"), ("score", "double")):
        xpath(f"//tr[td[normalize-space()='{name}'] and td[normalize-space()='{kind}']]")
    shot("06-schema")
    tab("Sample rows")
    screen.should_contain("sample 7, with a comma")
    shot("07-sample-rows")

    # --- copy a snippet: the browser's clipboard holds it ----------------------------------
    tab("Code")
    screen.should_contain("PyTorch DataLoader")
    from pygestor.snippets import snippets

    expected = snippets("toy/train", manager.settings)["torch"]
    xpath("//div[contains(@class, 'pg-snippet')][.//div[normalize-space()='PyTorch DataLoader']]"
          "//button[contains(normalize-space(.), 'Copy')]").click()
    screen.should_contain("Copied the PyTorch DataLoader snippet")
    copied = driver.execute_async_script(
        "const done = arguments[0];"
        "navigator.clipboard.readText().then(done, e => done('ERROR ' + e));")
    assert copied == expected
    shot("08-code-copied")

    # --- remove two partitions, after confirming -------------------------------------------
    tab("Partitions (3)")
    for name in ("part-00000.parquet", "part-00002.parquet"):
        xpath(f"//tr[td[normalize-space()='{name}']]//div[@role='checkbox']").click()
    button("Remove selected (2)").click()
    screen.should_contain("Remove 2 partitions of toy/train?")
    shot("09-confirm-remove")
    button("Remove", within=dialog()).click()
    screen.should_contain("Removed 2 partitions of toy/train")
    wait(lambda: train_parts() == {"part-00000.parquet": False, "part-00001.parquet": True,
                                   "part-00002.parquet": False}, what="two partitions removed")
    not_downloaded = "//div[contains(@class, 'q-badge') and normalize-space()='Not downloaded']"
    wait(lambda: len(driver.find_elements(By.XPATH, not_downloaded)) == 2,
         what="the table showing two partitions not downloaded")
    shot("10-removed-two")

    # --- images in sample rows (a second dataset registered directly) ----------------------
    manager.add_dataset("media/thumbnails", str(write_media_source(tmp_path)), pipeline="files",
                        modality="image", description="Thumbnails with captions")
    original("media/thumbnails", progress=False)
    screen.open("/dataset/media/thumbnails?subset=default")
    tab("Sample rows")
    images = driver.find_elements(By.XPATH, "//table//img[starts-with(@src, 'data:image/png')]")
    assert len(images) >= 10
    screen.should_load_image(images[0])
    caption = "//td[contains(., 'caption 1 very long')]"
    assert "…" in xpath(caption).text
    xpath(f"{caption}//a[normalize-space()='more']").click()  # unfold a long text
    wait(lambda: "…" not in xpath(caption).text and "less" in xpath(caption).text,
         what="the long caption unfolded")
    shot("11-sample-images")
    tab("Schema")
    screen.should_contain("struct (2 fields)")
    shot("12-nested-schema")
    screen.open("/")
    screen.should_contain("Storage usage")
    shot("13-datasets")

    # --- delete the dataset (metadata and data), after confirming --------------------------
    screen.open("/dataset/toy")
    button("Delete dataset").click()
    screen.should_contain("Delete dataset “toy”?")
    shot("14-confirm-delete")
    button("Delete dataset", within=dialog()).click()
    screen.should_contain("Deleted toy and its data")
    assert driver.current_url.startswith(f"{origin}/?"), "back on the datasets page"
    assert manager.catalog.names() == ["media/thumbnails"]
    assert not Path(manager.partition_path("toy", "train", "part-00001.parquet")).exists()
    shot("15-after-delete")

    # --- with a password, the browser must sign in first ------------------------------------
    locked = Manager(Settings.load(data_dir=manager.settings.data_dir, env={},
                                   ui_password="open sesame"))
    ui_app.set_manager(locked)
    screen.open("/dataset/media/thumbnails")
    assert "/login?redirect_to=" in driver.current_url
    screen.should_contain("This Pygestor server needs its password.")
    xpath("//input[@aria-label='Password']").send_keys("wrong")
    button("Sign in").click()
    screen.should_contain("Wrong password. Try again.")
    shot("16-login")
    xpath("//input[@aria-label='Password']").send_keys("open sesame")
    button("Sign in").click()
    screen.should_contain("About this dataset")  # back where the browser was going
    assert driver.current_url == f"{origin}/dataset/media/thumbnails"


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
