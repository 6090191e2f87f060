"""The headless browser the web view's tests drive: Debian's chromium through chromium-driver (Selenium).

Under CI=true (chromium and chromium-driver come from .ci/run) a missing
browser or driver fails the test; elsewhere it skips with one line.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.needs import need_module, need_path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[Any]:
    need_module("selenium", "selenium")
    need_path(CHROMIUM, "the browser test drives Debian's chromium (apt-get install chromium)")
    need_path(
        CHROMEDRIVER, "the browser test drives chromium through chromium-driver (apt-get install chromium-driver)"
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="nic-sandbox-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1600",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        subprocess.run(["rm", "-rf", profile], check=False)
