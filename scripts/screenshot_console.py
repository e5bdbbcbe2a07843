#!/usr/bin/env python3
"""Draw the onboarding console's pictures (docs/console-*.png) from a real run.

Starts a sim-carrier and a gateway as real processes on free ports in a temporary directory, then
drives Debian's /usr/bin/chromium through the same walk as tests/e2e/test_console.py (sign in, country
rules, a new request, its documents and status, the admin's review), and a phone-sized view of the
request. Stops what it started, by PID.

    .venv/bin/python scripts/screenshot_console.py            # writes docs/console-*.png
    .venv/bin/python scripts/screenshot_console.py --out /tmp/shots
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.conftest import free_port  # noqa: E402
from tests.e2e.procs import Procs  # noqa: E402
from tests.e2e.test_console import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    PAGES,
    gateway_config,
    make_keys,
    settled,
    walk,
)


def draw(out: Path) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="smsgw-console-") as workdir:
        procs = Procs(Path(workdir))
        try:
            sim_port = procs.sim_carrier()
            port = free_port()
            keys = make_keys(procs)
            procs.gateway(port, gateway_config(port, sim_port))
            base = f"http://127.0.0.1:{port}"
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 860})
                    page.set_default_timeout(8000)
                    reg_id = walk(page, base, keys, out)
                    page.set_viewport_size({"width": 390, "height": 844})
                    page.goto(f"{base}/console/#/requests/{reg_id}")
                    settled(page, "request")
                    page.screenshot(path=out / "console-phone.png")
                finally:
                    browser.close()
        finally:
            procs.stop_all()
    return [out / f"console-{name}.png" for name in (*PAGES, "phone")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="directory for the PNG files")
    args = ap.parse_args(argv)
    for path in draw(args.out):
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
