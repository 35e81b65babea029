"""The PDF: every chart rendered to a PNG by kaleido (which drives a headless Chromium through
choreographer), put into the report's HTML as images, and laid out by WeasyPrint.

kaleido >= 1 brings no browser: choreographer finds one, and `BROWSER_PATH` names it. The report passes kaleido
the browser itself: `BROWSER_PATH` when set, else Debian's Chromium (/usr/bin/chromium), else `chromium` on the
PATH, so nothing is ever downloaded. MathJax is off: kaleido
would otherwise load it from a CDN, which an offline host waits on.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

DEBIAN_CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT, SCALE = 1000, 380, 2  # px at 1x; scale 2 stays sharp when printed on A4


class PdfError(RuntimeError):
    """The PDF could not be made (no browser for the charts, a WeasyPrint without its system libraries)."""


def browser_path() -> str:
    named = os.environ.get("BROWSER_PATH")
    if named and not os.access(named, os.X_OK):
        raise PdfError(f"BROWSER_PATH={named}: not an executable browser; unset it to use Debian's chromium")
    path = named or (DEBIAN_CHROMIUM if os.access(DEBIAN_CHROMIUM, os.X_OK) else None) \
        or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise PdfError("no Chromium for the PDF's charts: install Debian's chromium "
                       "(scripts/install-system-deps.sh) or set BROWSER_PATH")
    return path


def render_images(figures: dict[str, Any]) -> dict[str, bytes]:
    """name -> PNG bytes, all from one browser."""
    if not figures:
        return {}
    import asyncio

    browser = browser_path()
    try:
        import kaleido
    except ImportError as e:
        raise PdfError(f"the PDF needs kaleido: pip install 'fleetwise[report]' ({e})") from None

    async def run() -> dict[str, bytes]:
        out = {}
        async with kaleido.Kaleido(n=1, mathjax=False, path=browser) as k:
            for name, fig in figures.items():
                out[name] = await k.calc_fig(fig, opts={"format": "png", "width": WIDTH, "height": HEIGHT,
                                                       "scale": SCALE})
        return out

    try:
        return asyncio.run(run())
    except PdfError:
        raise
    except Exception as e:  # choreographer's browser errors have many classes; the message says what happened
        raise PdfError(f"rendering the charts with {browser} failed: "
                       f"{type(e).__name__}: {e}") from None


def write_pdf(html_text: str, path: Path) -> None:
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as e:  # OSError: the wheel could not load Pango
        raise PdfError(f"the PDF needs WeasyPrint and Pango (pip install 'fleetwise[report]'; "
                       f"scripts/install-system-deps.sh): {e}") from None
    HTML(string=html_text, base_url=None).write_pdf(path)
