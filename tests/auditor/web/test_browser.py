"""``audit serve`` in a real browser: Debian's chromium, headless, driven by Selenium through chromium-driver.

One test walks what a user does: the page loads with the chain's verdict,
the chart draws, choosing a reason narrows the table, a row opens in full,
a tenant name full of markup and script stays text, and a record written
by the real writer while the page is open appears without a reload.  The
server is the real command (``python -m sandbox audit serve --port 0``) in
its own process on a free loopback port, stopped (SIGTERM, then kill) at
the end.  A screenshot is saved in out/ci-artifacts/ (the path is printed).

Under CI=true (chromium and chromium-driver come from .ci/run) the test
must run; elsewhere it skips with one line when they are missing.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.auditor.web.logs import HOSTILE_DETAIL, HOSTILE_NAME, write_log
from tests.needs import need_module

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOT = ROOT / "out" / "ci-artifacts" / "audit-serve.png"
#: Longest wait for anything to appear (a hang guard, not a speed assert: the page polls once a second).
WAIT_S = 30
RECORDS = 240


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A log written by the real writer (one line then damaged) and ``audit serve`` on it: (URL, log path)."""
    for module, extra in (("starlette", "nic-sandbox[audit]"), ("uvicorn", "nic-sandbox[audit]")):
        need_module(module, extra)
    log = tmp_path / "audit.jsonl"
    write_log(log, RECORDS, hostile_at=5)
    lines = log.read_bytes().splitlines(keepends=True)
    lines[20] = lines[20].replace(b'"owner":"kernel"', b'"owner":"alice!"')  # one altered record: shown as bad
    log.write_bytes(b"".join(lines))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "audit", "serve", str(log), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], WAIT_S)
        first = proc.stdout.readline() if ready else ""
        found = re.search(r"http://127\.0\.0\.1:\d+/", first)
        assert found, f"audit serve did not say where it listens: {first!r}"
        yield found.group(0), log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 143), proc.stderr.read() if proc.stderr else ""


def test_page_chart_filter_record_escaping_and_live(server: tuple[str, Path], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, log = server
    wait = WebDriverWait(browser, WAIT_S)

    def rows() -> list[list[str]]:
        """The table's cells as text (one WebDriver call: a call per cell takes seconds for a page)."""
        found: list[list[str]] = browser.execute_script(
            "return [...document.querySelectorAll('#records tbody tr')]"
            ".map(tr => [...tr.cells].map(c => c.textContent))"
        )
        return found

    def total() -> int:
        return int(browser.find_element(By.ID, "records").get_attribute("data-total") or -1)

    browser.get(url)
    assert browser.title == "nic-sandbox audit"
    # the page loads: the table's first page, newest first, and the chain's verdict (one record was altered)
    wait.until(lambda d: total() == RECORDS)
    assert rows()[0][0] == str(RECORDS - 1)
    wait.until(lambda d: "TAMPERED" in d.find_element(By.ID, "chain").text)
    problems = browser.find_element(By.ID, "problems").text
    assert "record altered: hash mismatch (audit.jsonl:21) at seq 20" in problems

    # the chart draws: stacked bars, one legend entry per reason
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar")) > 0)
    keys = {r.get_attribute("data-key") for r in browser.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar")}
    assert {"ADDR_NOT_PINNED", "LEN_ZERO"} <= keys
    assert "LEN_ZERO" in browser.find_element(By.ID, "legend").text

    # filtering by reason changes the table: every row shown has that reason, and fewer match
    Select(browser.find_element(By.ID, "f-reason")).select_by_value("LEN_ZERO")
    wait.until(lambda d: 0 < total() < RECORDS and all(r[4] == "LEN_ZERO" for r in rows()))
    wait.until(lambda d: {r.get_attribute("data-key") for r in d.find_elements(By.CSS_SELECTOR, "#chart rect.bar")}
               == {"LEN_ZERO"})  # fmt: skip

    # a record opens: fields, the descriptor decoded again, neighbours
    first = browser.find_element(By.CSS_SELECTOR, "#records tbody tr")
    seq = first.find_elements(By.TAG_NAME, "td")[0].text
    first.click()
    wait.until(lambda d: d.find_element(By.ID, "record-section").is_displayed())
    assert browser.find_element(By.ID, "record-title").text.startswith(f"record seq {seq} ")
    assert "legacy TX descriptor" in browser.find_element(By.ID, "record-layout").text
    assert "EOP|IFCS|RS" in browser.find_element(By.ID, "record-desc").text
    near = [
        tr.find_elements(By.TAG_NAME, "td")[0].text
        for tr in browser.find_elements(By.CSS_SELECTOR, "#record-neighbours tr")
    ]
    assert str(int(seq) - 1) in near and str(int(seq) - 3) in near

    # the bad record is shown as bad, the rest still serve
    browser.find_element(By.ID, "clear").click()
    Select(browser.find_element(By.ID, "f-status")).select_by_value("bad")
    wait.until(lambda d: total() == 1)
    assert rows()[0][1:5] == ["audit.jsonl:21", "(bad record)", "", "record altered: hash mismatch"]

    # free SQL (audit query's engine) narrows the table, AND-ed with the other filters
    browser.find_element(By.ID, "clear").click()
    browser.find_element(By.ID, "f-sql").send_keys("seq < 40 AND kind = 'tx'")
    Select(browser.find_element(By.ID, "f-reason")).select_by_value("LEN_ZERO")
    wait.until(lambda d: 0 < total() < 40 and all(int(r[0]) < 40 and r[4] == "LEN_ZERO" for r in rows()))

    # markup in a tenant name and a detail is text: shown as written, never parsed, never run
    browser.find_element(By.ID, "clear").click()
    tenants = Select(browser.find_element(By.ID, "f-tenant")).options  # by_value builds a CSS selector of the name
    next(o for o in tenants if o.get_attribute("value") == HOSTILE_NAME).click()
    wait.until(lambda d: total() == 1)
    assert rows()[0][2] == f"{HOSTILE_NAME}(7)"
    browser.find_element(By.CSS_SELECTOR, "#records tbody tr").click()
    wait.until(lambda d: d.find_element(By.ID, "record-title").text.startswith("record seq 5 "))
    assert HOSTILE_DETAIL in browser.find_element(By.ID, "record-fields").text
    assert browser.execute_script("return window.pwned") is None
    assert browser.find_elements(By.CSS_SELECTOR, "img, b, #records script, #record-section script") == []

    # live: records appended by the real writer appear without reloading the page
    browser.find_element(By.ID, "clear").click()
    wait.until(lambda d: total() == RECORDS)
    write_log(log, 3, start=RECORDS)
    wait.until(lambda d: total() == RECORDS + 3 and rows()[0][0] == str(RECORDS + 2))
    assert browser.find_elements(By.CSS_SELECTOR, "#records tbody tr.fresh")
    assert browser.execute_script("return window.pwned") is None

    browser.find_element(By.CSS_SELECTOR, "#records tbody tr").click()  # the newest record open, page at the top
    wait.until(lambda d: d.find_element(By.ID, "record-title").text.startswith(f"record seq {RECORDS + 2} "))
    browser.execute_script("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    print(f"screenshot: {SCREENSHOT}")
    # nothing failed in the page: no script error, no refused resource (the CSP would report one here)
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    assert os.path.getsize(SCREENSHOT) > 10_000
