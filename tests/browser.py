"""Headless Chromium for the tests, driven by selenium through Debian's chromedriver (no browser download).

Chromium comes from the system: when `chromium` or `chromedriver` is missing and this process may
install packages (root, apt-get), they are installed once (Debian's `chromium`, `chromium-driver`),
as CI's `make test` does on a fresh machine. Elsewhere the browser tests are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from devtools.template import ROOT

SCREENSHOTS = ROOT / "build" / "screenshots"  # build/ is git-ignored
PACKAGES = ("chromium", "chromium-driver")
# What Chromium needs to run here: no sandbox (containers), no GPU, and nothing reaching the network.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1100,900",
)


def chromium() -> tuple[str, str] | str:
    """(browser, driver) paths, installing them when possible; else why they cannot be had."""
    found = _paths()
    if found:
        return found
    if not shutil.which("apt-get"):
        return "Chromium and chromedriver are not installed, and there is no apt-get to install them"
    if os.geteuid() != 0:
        return "Chromium and chromedriver are not installed, and installing them needs root (apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            return f"installing Chromium failed ({' '.join(command)}): {done.stderr.strip()[-300:]}"
    return _paths() or "apt-get installed Chromium, but chromium or chromedriver is still not on PATH"


def _paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start(browser: str, driver: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}")  # a fresh profile
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def screenshot(driver, name: str, element=None) -> Path:
    """The window, or only `element` (the page's content, without the empty window below it)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if element is None:
        driver.save_screenshot(str(path))
    else:
        element.screenshot(str(path))
    return path
