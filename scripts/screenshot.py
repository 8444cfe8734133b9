"""A PNG of a `harvester report` page as headless Chromium draws it (the README's screenshot).

    python scripts/screenshot.py .demo/demo-rqs.report.html docs/report.png

The page must load without a JavaScript error and without asking any host for anything, and
every chart must be drawn, or no PNG is written: the picture in the README is a page that works.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the DevTools client lives beside the report tests

from tests.report.browser import Chromium, file_url  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    with Chromium(width=args.width) as browser:
        page = browser.open(file_url(args.report))
        page.wait_for(
            "Array.from(document.querySelectorAll('section.chart')).every("
            "s => s.querySelector('.js-plotly-plot .main-svg') !== null)"
        )
        browser.pump(0.5)
        if page.errors or page.requests != [file_url(args.report)]:
            sys.exit(f"screenshot: the page is not clean: {page.errors} {page.requests}")
        args.png.write_bytes(page.screenshot(width=args.width))
    print(args.png)


if __name__ == "__main__":
    main()
