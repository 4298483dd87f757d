"""Open the built documentation in a real browser and check it: math rendered, images loaded, no errors.

    python -m sphinx -W --keep-going -b html docs docs/_build/html      # build the site first
    python docs/check_site.py                                           # then check it

Needs the system's Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and
Selenium (in the ``docs`` extra). Without page names it checks every page of the site (name pages to check
fewer). The site is served from a local HTTP server on 127.0.0.1, and Chromium runs
headless with its background networking switched off, so the check needs no network and fails if a page
asks for anything outside the site. For each page it

* waits for MathJax to typeset, then counts the rendered formulas (``mjx-container``) against the math
  in the page and requires no MathJax error (``mjx-merror``);
* requires every image to have loaded (``naturalWidth > 0``);
* requires every notebook code cell and table to fit the page at 1280 px (nothing scrolled sideways);
* requires an empty console (no errors or warnings) and no request to another host;
* saves a full-page screenshot to ``--out``.

It also scans every HTML file of the site for scripts, stylesheets or fonts loaded from another host.
Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000", "--hide-scrollbars"]
EXTERNAL = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["']((?:https?:)?//[^"']+)""", re.I)


def external_assets(site: Path) -> list[str]:
    """Scripts, stylesheets, images and frames that an HTML page of the site loads from another host."""
    found = []
    for page in sorted(site.rglob("*.html")):
        for url in EXTERNAL.findall(page.read_text(errors="replace")):
            tag = re.search(r"<(\w+)[^>]*" + re.escape(url), page.read_text(errors="replace"))
            if tag and tag.group(1).lower() == "link" and 'rel="canonical"' in tag.group(0):
                continue
            found.append(f"{page.relative_to(site)}: {url}")
    return found


SKIP = {"genindex.html", "search.html", "py-modindex.html"}      # generated indexes, no content of ours


def site_pages(site: Path) -> list[str]:
    """Every page of the built site, relative to it: the documents and the interactive pages under _static."""
    pages = [p.relative_to(site).as_posix() for p in sorted(site.rglob("*.html"))]
    return [p for p in pages if p not in SKIP and not p.startswith(("_sources/", "_downloads/", "_static/mathjax/"))
            and (not p.startswith("_static/") or p.startswith("_static/interactive/"))]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(site: Path):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def browser(user_data: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in FLAGS + [f"--user-data-dir={user_data}"]:
        options.add_argument(flag)
    chromium = Path("/usr/bin/chromium")
    if chromium.exists():
        options.binary_location = str(chromium)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = Path("/usr/bin/chromedriver")
    service = Service(str(driver_path)) if driver_path.exists() else Service()
    return webdriver.Chrome(options=options, service=service)


PAGE_STATE = """
const done = arguments[arguments.length - 1];
const ready = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
ready.then(() => {
  const imgs = Array.from(document.images);
  done({
    math: document.querySelectorAll('.math, span.math, div.math').length,
    rendered: document.querySelectorAll('mjx-container').length,
    merrors: document.querySelectorAll('mjx-merror').length,
    mathjax: !!window.MathJax,
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    resources: performance.getEntriesByType('resource').map(e => e.name),
    title: document.title,
    // code cells and tables wider than their box: lines that would be clipped (scrolled) at this width
    clipped: Array.from(document.querySelectorAll('div.cell_input pre, div.table-wrapper'))
      .filter(e => e.scrollWidth > e.clientWidth + 1)
      .map(e => e.tagName.toLowerCase() + ': ' + e.textContent.trim().slice(0, 60)),
  });
}).catch(e => done({error: String(e)}));
"""


def check_page(driver, base: str, page: str, out: Path) -> list[str]:
    problems = []
    driver.get(f"{base}/{page}")
    state = driver.execute_async_script(PAGE_STATE)
    if "error" in state:
        return [f"{page}: MathJax failed: {state['error']}"]
    if state["math"] and not state["mathjax"]:
        problems.append(f"{page}: the page has math but MathJax did not load")
    if state["rendered"] < state["math"]:
        problems.append(f"{page}: {state['rendered']} of {state['math']} formulas rendered")
    if state["merrors"]:
        problems.append(f"{page}: {state['merrors']} MathJax errors")
    if state.get("clipped"):
        problems.append(f"{page}: {len(state['clipped'])} code cells or tables wider than the page: {state['clipped'][:3]}")
    if state["broken"]:
        problems.append(f"{page}: images that did not load: {state['broken']}")
    foreign = [url for url in state["resources"] if not url.startswith(base)]
    if foreign:
        problems.append(f"{page}: requests outside the site: {foreign}")
    for entry in driver.get_log("browser"):
        if entry["level"] in ("SEVERE", "WARNING"):
            problems.append(f"{page}: console {entry['level']}: {entry['message']}")
    # full-page screenshot: the height the page needs, not the window's
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 50, 16000))
    name = page.replace("/", "_").replace(".html", ".png")
    driver.save_screenshot(str(out / name))
    driver.set_window_size(1280, 1000)
    print(f"{page}: '{state['title']}', {state['rendered']}/{state['math']} formulas rendered, "
          f"{state['images'] - len(state['broken'])}/{state['images']} images loaded, "
          f"{len(state['resources'])} requests, screenshot {out / name}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=HERE / "_build" / "html", help="the built site (default docs/_build/html)")
    parser.add_argument("--out", type=Path, default=HERE / "_build" / "screenshots", help="screenshot folder")
    parser.add_argument("pages", nargs="*", help="pages to open, relative to the site (default: every page)")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").exists():
        parser.error(f"--site: no index.html in {args.site}; build the site first")
    try:
        import selenium  # noqa: F401
    except ImportError:
        parser.error('this check needs Selenium: pip install -e ".[docs]" (or pip install selenium)')
    args.out.mkdir(parents=True, exist_ok=True)
    pages = args.pages or site_pages(args.site)

    problems = [f"external asset {a}" for a in external_assets(args.site)]
    server = serve(args.site)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as user_data:
        driver = browser(user_data)
        try:
            for page in pages:
                problems += check_page(driver, base, page, args.out)
        finally:
            driver.quit()
            server.shutdown()
    for line in problems:
        print("FAIL", line)
    print("site check:", "passed" if not problems else f"{len(problems)} problems")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
