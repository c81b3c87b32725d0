"""Headless Chromium as this project's machines run it (Debian's, driven by Playwright), for the
demo's benchmark and its browser test: as root on a closed network, so no sandbox, no GPU, and no
background connections that the machine would refuse, many at a time."""

import shutil

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def chromium() -> str | None:
    """Debian's chromium, if it and Playwright are installed."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None
    return shutil.which("chromium")
