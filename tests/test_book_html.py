"""Checks of the built HTML book (_build/html): Colab links, offline assets, and the pages
as a reader sees them in headless Chromium (equations typeset, images loaded, internal
links resolve, widgets drawn from their stored state).

`make test` runs these after the strict build (with BOOK_HTML_REQUIRED=1, so a missing or
stale build fails). Run alone (`make unit`), they skip when there is no up-to-date build.
Chromium is Debian's package; the set-up installs it with apt-get when it is absent.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# BOOK_HTML_DIR points the tests at another build (e.g. one made with --path-output).
HTML = Path(os.environ.get("BOOK_HTML_DIR", ROOT / "_build" / "html"))
SCREENSHOTS = HTML.parent / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
REQUIRED = os.environ.get("BOOK_HTML_REQUIRED") == "1"
# sphinx-thebe (part of Jupyter Book 1, unused here) declares this constant twice on every
# page; the error is harmless and not the book's.
KNOWN_JS_ERRORS = re.compile(r"Identifier 'THEBE_JS_URL' has already been declared")
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\\frac|\\mathbb|\\theta")


def _skip_or_fail(reason: str):
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_files() -> list[str]:
    """Every document of the table of contents, root first (e.g. 'book/01_introduction')."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def visit(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(toc.get("parts", toc.get("chapters", [])))
    return files


def _chapters() -> list[str]:
    return [f for f in _toc_files() if (ROOT / f"{f}.ipynb").exists()]


def _stale_sources() -> list[str]:
    """Sources changed since the build: a page older than its own source, or a config file
    newer than the newest page (Sphinx rebuilds every page a config change touches)."""
    stale = []
    newest = 0.0
    for doc in _toc_files():
        page = HTML / f"{doc}.html"
        sources = [ROOT / f"{doc}{ext}" for ext in (".ipynb", ".md") if (ROOT / f"{doc}{ext}").exists()]
        newest = max(newest, page.stat().st_mtime)
        stale += [str(s.relative_to(ROOT)) for s in sources if s.stat().st_mtime > page.stat().st_mtime]
    for config in (ROOT / "_config.yml", ROOT / "_toc.yml", ROOT / "book" / "references.bib"):
        if config.exists() and config.stat().st_mtime > newest:
            stale.append(str(config.relative_to(ROOT)))
    return stale


@pytest.fixture(scope="module")
def html_dir() -> Path:
    index = HTML / "index.html"
    if not index.exists():
        _skip_or_fail("no built book in _build/html: run `make book` (or `make test`) first")
    missing = [f for f in _toc_files() if not (HTML / f"{f}.html").exists()]
    if missing:
        _skip_or_fail(f"pages missing from _build/html: {missing}: rebuild with `make book`")
    stale = _stale_sources()
    if stale and "BOOK_HTML_DIR" not in os.environ:  # a build chosen explicitly is taken as it is
        _skip_or_fail(f"_build/html is older than {stale[:3]}: rebuild with `make book`")
    return HTML


# ------------------------------------------------------------------ static checks (no browser)
class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.assets: list[str] = []  # script src and stylesheet href
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "script" and a.get("src"):
            self.assets.append(a["src"])
        if tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or ""):
            self.assets.append(a["href"])


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Collect:
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_every_chapter_links_to_its_notebook_on_colab(html_dir):
    config = _config()
    repo = config["repository"]
    owner_repo = urlparse(repo["url"]).path.strip("/")
    base = config["launch_buttons"]["colab_url"].rstrip("/")
    prefix = str(repo.get("path_to_book") or "").strip("/")
    missing = []
    for chapter in _chapters():
        path = f"{prefix}/{chapter}" if prefix else chapter
        expected = f"{base}/github/{owner_repo}/blob/{repo['branch']}/{path}.ipynb"
        if expected not in _parse(html_dir / f"{chapter}.html").links:
            missing.append((chapter, expected))
    assert not missing, f"chapter pages without their Colab link: {missing}"


def test_pages_load_no_assets_from_the_network(html_dir):
    """MathJax and the widget manager are vendored: no script or stylesheet from a CDN."""
    remote = {}
    for doc in _toc_files():
        assets = [a for a in _parse(html_dir / f"{doc}.html").assets if re.match(r"^(https?:)?//", a)]
        if assets:
            remote[doc] = assets
    assert not remote, f"pages loading scripts or styles from the network: {remote}"
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").exists()


def test_internal_links_resolve(html_dir):
    broken = []
    for doc in _toc_files():
        page = html_dir / f"{doc}.html"
        for href in _parse(page).links:
            if re.match(r"^[a-z][a-z0-9+.-]*:", href) or href.startswith("//"):
                continue  # external (https:, mailto:, ...)
            target, fragment = urldefrag(href)
            target_path = (page.parent / unquote(target)).resolve() if target else page
            if target_path.is_dir():
                target_path = target_path / "index.html"
            if not target_path.exists():
                broken.append((doc, href))
            elif fragment and target_path.suffix == ".html" and unquote(fragment) not in _parse(target_path).ids:
                broken.append((doc, href))
    assert not broken, f"internal links that do not resolve: {broken}"


# ------------------------------------------------------------------ in the browser
def _ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    if shutil.which("apt-get") is None:
        pytest.fail("Chromium is missing and apt-get is not available to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], check=True, env=env
    )
    assert CHROMIUM.exists(), "apt-get installed chromium, yet /usr/bin/chromium is absent"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(html_dir):
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(html_dir):
    _ensure_chromium()
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


_INSPECT = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  window.scrollTo(0, document.body.scrollHeight);
  const images = Array.from(document.querySelectorAll('img'));
  await Promise.all(images.map(img => img.complete ? null : new Promise(r => {
    img.addEventListener('load', r); img.addEventListener('error', r); })));
  const mathNodes = Array.from(document.querySelectorAll('.math'));
  // Text outside code, scripts and typeset math: raw TeX there means MathJax missed it.
  const walker = document.createTreeWalker(document.querySelector('main') || document.body,
                                           NodeFilter.SHOW_TEXT);
  let text = '';
  while (walker.nextNode()) {
    const n = walker.currentNode;
    if (n.parentElement.closest('pre, code, script, style, mjx-container, .cell_input, textarea'))
      continue;
    text += n.textContent + '\n';
  }
  return {
    mathjax: !!(window.MathJax && MathJax.startup),
    math: mathNodes.length,
    untypeset: mathNodes.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    containers: document.querySelectorAll('mjx-container').length,
    errors: Array.from(document.querySelectorAll('mjx-merror, [data-mjx-error]'))
                 .map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 5),
    text: text,
    images: images.map(img => ({src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0})),
    widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widgetsDrawn: document.querySelectorAll('.jupyter-widgets, .widget-container, .widget-inline-hbox').length,
  };
}
"""


@pytest.mark.parametrize("doc", _toc_files())
def test_page_renders_offline(doc, html_dir, server, browser):
    external: list[str] = []
    page_errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: None if KNOWN_JS_ERRORS.search(str(e)) else page_errors.append(str(e)))
    try:
        page.goto(f"{server}/{doc}.html", wait_until="load")
        has_widgets = "application/vnd.jupyter.widget-state+json" in (html_dir / f"{doc}.html").read_text()
        if has_widgets:  # the widget manager draws the stored views after load
            page.wait_for_function(
                "document.querySelectorAll('.jupyter-widgets, .widget-container').length > 0",
                timeout=20_000,
            )
        report = page.evaluate(_INSPECT)
        if doc == "book/01_introduction":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "01_introduction.png"), full_page=True)
    finally:
        page.close()

    assert not external, f"{doc} tried to reach the network: {external[:5]}"
    assert not page_errors, f"{doc} raised JavaScript errors: {page_errors[:3]}"
    if report["math"]:
        assert report["mathjax"], f"{doc} has equations but MathJax did not load"
        assert not report["untypeset"], f"{doc}: equations MathJax did not typeset: {report['untypeset'][:3]}"
        assert report["containers"] >= report["math"]
    assert not report["errors"], f"{doc}: MathJax errors (undefined macro?): {report['errors']}"
    raw = RAW_TEX.findall(report["text"])
    assert not raw, f"{doc}: raw TeX left in the page text: {raw[:5]}"
    broken = [img["src"] for img in report["images"] if not img["ok"]]
    assert not broken, f"{doc}: images that did not load: {broken}"
    if report["widgetViews"]:
        assert report["widgetsDrawn"] > 0, f"{doc}: stored widget views were not drawn"
