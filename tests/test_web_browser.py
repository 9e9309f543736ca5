"""A person's visit: `python -m monitor serve` as a real process, driven by headless Chromium.

Debian's chromium and chromium-driver (installed by .ci/install-browser) through Selenium. The
test searches (in Chinese too), opens an item, follows a search to an edited item's diff, and looks
at the timeline chart. Skipped, with the reason, only when Chromium is not installed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_web_api import build_database

from tests.conftest import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000")
DEADLINE = 30.0  # seconds for the server to answer /healthz

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("Debian's chromium and chromium-driver are not installed (bash .ci/install-browser)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early with {process.returncode}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(healthy, timeout=DEADLINE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, int]]]:
    workdir = tmp_path_factory.mktemp("browser")
    db = workdir / "diplowatch.db"
    ids = build_database(db)
    port = free_port()
    env = {**os.environ, "DIPLOWATCH_API_TOKEN": "not-needed-on-loopback"}
    command = [sys.executable, "-m", "monitor", "--db", str(db), "--config", str(workdir / "none.yaml"),
               "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        yield url, ids
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr.decode()  # SIGTERM is a clean stop


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def navigate(browser: Any, action: Any) -> None:
    """Click or submit, then wait (with a deadline) until the next page has replaced this one."""
    page = browser.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(browser, 15).until(lambda _: _replaced(page))


def _replaced(page: Any) -> bool:
    """Like expected_conditions.staleness_of, plus Chromium's other way of saying the node is gone."""
    try:
        page.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        if "does not belong to the document" in str(e):
            return True
        raise
    return False


def search(browser: Any, url: str, text: str) -> list[Any]:
    browser.get(f"{url}/")
    box = browser.find_element(By.NAME, "q")
    box.send_keys(text)
    navigate(browser, box.submit)
    return browser.find_elements(By.CSS_SELECTOR, "li.result")


def test_search_in_chinese_and_open_the_item(server: tuple[str, dict[str, int]], browser: Any) -> None:
    url, ids = server
    results = search(browser, url, "网络安全")
    assert len(results) == 1
    assert [m.text for m in results[0].find_elements(By.TAG_NAME, "mark")][:1] == ["网络安全"]
    assert "cn-cyber-sovereignty" in results[0].text
    navigate(browser, results[0].find_element(By.CSS_SELECTOR, "h2 a").click)
    assert browser.current_url.startswith(f"{url}/items/{ids['mfa-cn-2024-0611']}")
    assert browser.find_element(By.ID, "item-title").text == "外交部发言人就网络安全问题答记者问"
    assert "cn-cyber-sovereignty" in browser.find_element(By.ID, "item-matches").text


def test_filters_and_an_edited_items_diff(server: tuple[str, dict[str, int]], browser: Any) -> None:
    url, _ = server
    browser.get(f"{url}/")
    browser.find_element(By.NAME, "topic").send_keys("norms")
    browser.find_element(By.NAME, "country").send_keys("us")
    browser.find_element(By.NAME, "lang").send_keys("en")
    navigate(browser, browser.find_element(By.CSS_SELECTOR, "form.filters button").click)
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "li.result h2")]
    assert titles == ["Joint Statement on Advancing Responsible State Behavior in Cyberspace",
                      "Statement on Cyber Norms Implementation (updated)"]
    navigate(browser, browser.find_element(By.LINK_TEXT, "Statement on Cyber Norms Implementation (updated)").click)
    added = [e.text.strip() for e in browser.find_elements(By.CSS_SELECTOR, ".revision ins")]
    assert added == ["(updated)", "consensus", ", including hospitals"]


def test_a_malformed_query_explains_itself(server: tuple[str, dict[str, int]], browser: Any) -> None:
    url, _ = server
    assert search(browser, url, 'AND ("') == []
    alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert "cannot read the search query" in alert


def test_the_timeline_chart_draws(server: tuple[str, dict[str, int]], browser: Any, tmp_path: Path) -> None:
    url, _ = server
    browser.get(f"{url}/")
    navigate(browser, browser.find_element(By.LINK_TEXT, "Timeline").click)
    chart = browser.find_element(By.ID, "timeline-chart")
    assert chart.size["width"] > 400 and chart.size["height"] > 100
    bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    assert len(bars) >= 4
    assert all(float(bar.get_attribute("height") or 0) > 0 for bar in bars)
    legend = browser.find_element(By.CSS_SELECTOR, "ul.legend").text
    assert "norms" in legend and "attribution" in legend
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(name.startswith(url) for name in loaded)  # nothing from the internet
    browser.save_screenshot(str(tmp_path / "timeline.png"))


def test_sources_page_and_no_console_errors(server: tuple[str, dict[str, int]], browser: Any) -> None:
    url, _ = server
    browser.get(f"{url}/sources")
    assert "us-state" in browser.find_element(By.ID, "sources").text
    logged = browser.get_log("browser")  # everything since the browser started, all tests above
    errors = [e for e in logged if e["level"] == "SEVERE" and e["source"] != "network"]  # 400s are wanted
    assert errors == []  # no CSP violation, no script error
    assert not [e for e in logged if "favicon" in e["message"]]
