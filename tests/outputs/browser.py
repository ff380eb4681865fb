"""Headless Debian `chromium` for tests: load a page from disk, run a check script in it, read back its JSON.

No selenium/playwright: the page (a copy with the check script appended) writes its findings into
``<pre id="check-result">`` and ``chromium --headless --dump-dom`` prints the DOM after the load event.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    env = os.environ.get("VSE_CHROMIUM")
    if env:
        return env
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def dump_dom(url: str, *, timeout: float = 240) -> str:
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("no chromium on PATH")
    with tempfile.TemporaryDirectory(prefix="vse-chromium-") as profile:
        args = [
            exe,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--window-size=1280,900",
            "--dump-dom",
            url,
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox (CI containers)
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"chromium exited {out.returncode}: {out.stderr[-2000:]}")
    return out.stdout


def run_check(page: Path, script: str, *, fragment: str = "", eager: bool = True) -> str:
    """Copy ``page`` beside itself with ``script`` appended (lazy images made eager, so the load event waits for
    them), open it in chromium, return the text the script put in ``#check-result``."""
    text = page.read_text(encoding="utf-8")
    if eager:
        text = text.replace(' loading="lazy"', "")
    check = page.with_name(f"check-{page.name}")
    wrapped = (
        "<pre id=\"check-result\"></pre><script>window.addEventListener('load', function () {"
        "var out; try { out = (function () {" + script + "})(); } catch (e) { out = {error: String(e)}; }"
        "document.getElementById('check-result').textContent = JSON.stringify(out); });</script>"
    )
    check.write_text(text.replace("</body>", wrapped + "\n</body>"), encoding="utf-8")
    dom = dump_dom(check.resolve().as_uri() + fragment)
    m = re.search(r'<pre id="check-result">(.*?)</pre>', dom, re.S)
    if not m:
        raise AssertionError(f"no check result in the DOM: {dom[:2000]}")
    return html.unescape(m.group(1))
