"""``fuzz --serve`` in a real browser: Debian's chromium, headless, driven by Selenium through chromium-driver.

The real command (``python -m sandbox fuzz --serve --serve-port 0``) runs a
short campaign under protection ``none`` (escapes at once) with coverage on,
and lingers; the page must show the campaign tab with the per-class table
filling up, the rate and coverage charts drawn, each escape with its
download link and the exact ``fuzz replay`` command and a copy button, and
the campaign's audit log one tab away.  A screenshot is saved in
out/ci-artifacts/fuzz-serve.png (the path is printed).

Under CI=true (chromium and chromium-driver come from .ci/run) the test
must run; elsewhere it skips with one line when they are missing.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.needs import need_module

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOT = ROOT / "out" / "ci-artifacts" / "fuzz-serve.png"
#: Longest wait for anything to appear (a hang guard, not a speed assert: the page polls once a second).
WAIT_S = 60
CLASSES = ["kernel-tx", "kernel-rx", "straddle", "wrap", "bad-length", "ring-index"]


@pytest.fixture
def campaign(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``fuzz --serve`` on a 3-second campaign, lingering: (URL, --out directory)."""
    for module in ("starlette", "uvicorn"):
        need_module(module, "nic-sandbox[audit]")
    out = tmp_path / "fz"
    argv = [sys.executable, "-m", "sandbox", "fuzz", "--protection", "none", "--classes", ",".join(CLASSES),
            "--seconds", "3", "--coverage", "--out", str(out), "--serve", "--serve-port", "0",
            "--serve-linger", "300", "--json"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], WAIT_S)
        first = proc.stderr.readline() if ready else ""
        found = re.search(r"http://127\.0\.0\.1:\d+/", first)
        assert found, f"fuzz --serve did not say where it serves: {first!r}"
        yield found.group(0), out
    finally:
        proc.send_signal(signal.SIGTERM)  # ends the linger (or the campaign)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (1, 143), proc.stderr.read() if proc.stderr else ""


def test_campaign_view_table_charts_escapes_and_replay(campaign: tuple[str, Path], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, out = campaign
    wait = WebDriverWait(browser, WAIT_S)

    def table() -> list[list[str]]:
        found: list[list[str]] = browser.execute_script(
            "return [...document.querySelectorAll('#c-classes tbody tr')]"
            ".map(tr => [...tr.cells].map(c => c.textContent))"
        )
        return found

    browser.get(url)
    wait.until(lambda d: d.title == "nic-sandbox fuzz")
    assert browser.find_element(By.ID, "campaign-view").is_displayed()
    assert not browser.find_element(By.ID, "audit-view").is_displayed()

    # the per-class table fills while the campaign runs: one row per class, descriptors counted
    wait.until(lambda d: [r[0] for r in table()] == CLASSES)
    wait.until(lambda d: int(d.find_element(By.ID, "c-classes").get_attribute("data-generated") or 0) > 0)
    # an escape appears with its reproducer and the command that replays it
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#c-escapes tbody tr a.download"))
    # the campaign ends (minimised, report written); the charts are drawn
    wait.until(lambda d: d.find_element(By.ID, "c-state").get_attribute("data-state") == "done")
    wait.until(lambda d: int(d.find_element(By.ID, "c-rate-chart").get_attribute("data-bars") or 0) > 0)
    assert browser.find_elements(By.CSS_SELECTOR, "#c-rate-chart svg rect.bar")
    lines = {e.get_attribute("data-key") for e in browser.find_elements(By.CSS_SELECTOR, "#c-cov-chart polyline")}
    assert lines == {"coverage: lines of verifier/", "escape findings"}

    report = json.loads((out / "report.json").read_text())
    rows = {r[0]: r for r in table()}
    for name in CLASSES:
        assert rows[name][1] == f"{report['classes'][name]['generated']:,}"
        assert rows[name][4] == f"{report['classes'][name]['escapes']:,}"
    shown = browser.find_elements(By.CSS_SELECTOR, "#c-escapes tbody tr")
    assert len(shown) == len(report["findings"]) > 0
    first, finding = shown[0], report["findings"][0]
    link = first.find_element(By.CSS_SELECTOR, "a.download")
    assert link.text == Path(finding["case"]).name and link.get_attribute("href") == url + "api/campaign/case/0"
    command = first.find_element(By.CSS_SELECTOR, "input.command").get_attribute("value")
    assert command == f"nic-sandbox fuzz replay {finding['case']} --protection none"
    # the download is the reproducer on disk (fetched by the page itself, with its own cookie and headers)
    got = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text().then(t => done([r.status, r.headers.get('content-disposition'), t])));",
        link.get_attribute("href"),
    )
    assert got[0] == 200 and got[1] == f'attachment; filename="{Path(finding["case"]).name}"'
    assert got[2] == Path(finding["case"]).read_text()
    button = first.find_element(By.CSS_SELECTOR, "td.replay button")
    button.click()
    wait.until(lambda d: button.text in ("copied", "copy"))  # copied where the browser allows it; never an error

    browser.execute_script("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    print(f"screenshot: {SCREENSHOT}")

    # the campaign's own audit log, one tab away
    browser.find_element(By.ID, "tab-audit").click()
    wait.until(lambda d: d.find_element(By.ID, "audit-view").is_displayed())
    wait.until(lambda d: "audit.jsonl" in d.find_element(By.ID, "files").text)
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    assert os.path.getsize(SCREENSHOT) > 10_000
