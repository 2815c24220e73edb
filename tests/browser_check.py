"""The built book in a real browser: every page of _toc.yml loaded in headless Chromium and checked.

Not a test module (pytest collects only ``test_*.py``; this file has no ``test_`` functions): it needs a
built book, Chromium, chromedriver and Selenium, so it runs after ``make book`` as ``make browser``:

    .venv/bin/python tests/browser_check.py _build/html
    .venv/bin/python tests/browser_check.py _build/html --page notebooks/04_weighted_loss_elastic_aug

It serves the folder with ``http.server`` on a free port of 127.0.0.1 and loads every page listed in
``_toc.yml``. On every page:

- console: no SEVERE entry in the browser's console (uncaught exceptions, failed local loads, ...),
  apart from failed loads of the external hosts in :data:`TOLERATED_HOSTS`;
- images: every ``<img>`` served by the book (files under _images/, inline ``data:`` images) is decoded
  (``complete`` and ``naturalWidth > 0``); an external image must come from a tolerated host;
- anchors: every link to a fragment of the same page (``href="#..."``: footnoted citations, their
  back-links, the page's table of contents) resolves to an element with that id, and a chapter whose
  source cites (``{footcite}``) renders at least one citation link.

On every chapter (``notebooks/*``) also:

- explorers: each static explorer (``unet_lib.explore.static_explorer``: ``div.unet-static-explorer``
  with ``[data-k]`` sliders and menus and one ``<img>``) is driven with the keyboard, every control
  through every one of its values: each move must change the image's ``src``, the new image must
  decode, and a slider's value label must follow;
- Colab: the badge in the text, and the theme's launch button when it renders one, open
  ``<colab_url>/github/<owner>/<repo>/blob/<branch>/<path_to_book>/notebooks/<name>.ipynb`` for the
  repository named in ``_config.yml``;
- a screenshot of the first screen (a 1280x900 window) is saved as ``<screenshots>/<name>.png``
  (default ``_build/screenshots/``, git-ignored with the rest of _build).

The browser runs offline on purpose: every host name except 127.0.0.1/localhost resolves to nothing
(``--host-resolver-rules``), so the result is the same on a CI machine without internet and on a laptop
with it. What a page may then fail to load is listed in :data:`TOLERATED_HOSTS` with the reason; any
other external load, or a JavaScript error that follows from one, fails the page. Console errors of the
toolchain itself (Sphinx, the theme, the browser), harmless and not the book's, are listed with the reason
in :data:`KNOWN_CONSOLE`; the run prints which of them it met, and says so when one no longer appears.

Prints one line per page with the checks it passed; exits 1 listing every failure (2: nothing to check).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent

#: external hosts a page may reference although the offline browser cannot reach them, and why
TOLERATED_HOSTS = {
    "colab.research.google.com": "the 'Open in Colab' badge image (colab-badge.svg) in each chapter's first cell",
    "cdn.jsdelivr.net": "MathJax 3, which Sphinx loads for the formulas (offline they stay TeX), and the "
                        "@jupyter-widgets HTML manager, which myst-nb loads on pages that carry ipywidgets state "
                        "(the widgets need a kernel anyway; the static explorers need neither)",
    "cdnjs.cloudflare.com": "require.js, which myst-nb loads with the widgets' HTML manager",
}

#: console errors that come from the toolchain, not from the book, each with why it is harmless; any other
#: SEVERE entry fails the page. Remove an entry when the toolchain is fixed (the check then says so).
KNOWN_CONSOLE = {
    r"Identifier 'THEBE_JS_URL' has already been declared":
        "Sphinx 7.4 writes sphinx-thebe's inline config <script> twice (the extension adds it after the builder "
        "has copied the registry); the first copy has run and thebe is not enabled, so the second changes nothing",
    r"/favicon\.ico - Failed to load resource":
        "the browser asks for /favicon.ico by itself; the book declares no icon",
}

WINDOW = (1280, 900)
LOAD_TIMEOUT_S = 120


def _serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # one line per page is printed instead
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _browser(chromium: str, chromedriver: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars",
                # offline by design: only the local server resolves (see the module docstring)
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(LOAD_TIMEOUT_S)
    driver.set_script_timeout(LOAD_TIMEOUT_S)
    return driver


def toc_pages(toc_file: Path) -> list[str]:
    """Every page of ``_toc.yml`` in reading order, as paths without suffix (``notebooks/02_fcn``)."""
    toc = yaml.safe_load(toc_file.read_text())
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []):
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return [re.sub(r"\.(ipynb|md)$", "", p) for p in pages]


def expected_colab(config: dict, page: str) -> str:
    """The Colab address of a chapter for the repository named in ``_config.yml``."""
    repo = config["repository"]
    owner_name = urlparse(repo["url"]).path.strip("/").removesuffix(".git")
    colab = config.get("launch_buttons", {}).get("colab_url", "https://colab.research.google.com").rstrip("/")
    path = "/".join(p for p in (repo.get("path_to_book", "").strip("/"), page + ".ipynb") if p)
    return f"{colab}/github/{owner_name}/blob/{repo.get('branch', 'main')}/{path}"


def _host(url: str) -> str:
    return urlparse(url).hostname or ""


_URL = re.compile(r"(https?://[^\s\"')]+)")


def console_errors(entries: list[dict]) -> tuple[list[str], list[str], set[str]]:
    """SEVERE console entries split into (errors, tolerated failed external loads, known toolchain patterns)."""
    errors, tolerated, known = [], [], set()
    for e in entries:
        if e.get("level") != "SEVERE":
            continue
        msg = e.get("message", "")
        urls = [u for u in _URL.findall(msg) if _host(u) not in ("127.0.0.1", "localhost")]
        failed_load = "Failed to load resource" in msg or "net::ERR_" in msg
        pattern = next((k for k in KNOWN_CONSOLE if re.search(k, msg)), None)
        if failed_load and urls and all(_host(u) in TOLERATED_HOSTS for u in urls):
            tolerated.append(msg)
        elif pattern is not None:
            known.add(pattern)
        else:
            errors.append(msg[:300])
    return errors, tolerated, known


# every image decoded: wait (bounded) for each one to settle, then read complete/naturalWidth
_IMAGES_JS = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
imgs.forEach(i => { i.loading = "eager"; });
const settle = i => i.complete ? Promise.resolve() : new Promise(r => {
  i.addEventListener("load", r, {once: true}); i.addEventListener("error", r, {once: true}); });
const timeout = new Promise(r => setTimeout(r, 20000));
Promise.race([Promise.all(imgs.map(settle)), timeout]).then(() => done(imgs.map(i => ({
  src: (i.currentSrc || i.src).slice(0, 120), host: i.src.startsWith("data:") ? "" : new URL(i.src).host,
  local: i.src.startsWith("data:") || new URL(i.src).origin === location.origin,
  complete: i.complete, width: i.naturalWidth, explorer: !!i.closest(".unet-static-explorer")}))));
"""

# same-page fragment links inside the article (the theme's navigation is not the book's content)
_ANCHORS_JS = """
const main = document.querySelector("article") || document.querySelector("main") || document.body;
return Array.from(main.querySelectorAll('a[href^="#"]')).filter(a => a.getAttribute("href").length > 1).map(a => {
  const id = decodeURIComponent(a.getAttribute("href").slice(1));
  return {id: id, text: a.textContent.trim().slice(0, 60), found: document.getElementById(id) !== null,
          citation: a.matches(".footnote-reference, [role=doc-noteref]")};
});
"""

_LINKS_JS = """
return Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => ({
  href: a.href, badge: !!a.querySelector('img[src*="colab-badge"]'),
  inContent: !!a.closest("article"), text: a.textContent.trim().slice(0, 40)}));
"""


def check_explorers(driver) -> tuple[int, int, list[str]]:
    """Move every control of every static explorer through all its values; (explorers, moves, failures)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    failures, moves = [], 0
    roots = driver.find_elements(By.CSS_SELECTOR, "div.unet-static-explorer")
    for n, root in enumerate(roots, 1):
        img = root.find_element(By.CSS_SELECTOR, "img")
        controls = root.find_elements(By.CSS_SELECTOR, "[data-k]")
        if not controls:
            failures.append(f"explorer {n}: no controls")
        for control in controls:
            is_range = control.tag_name == "input"
            if is_range:
                count = int(control.get_attribute("max")) - int(control.get_attribute("min")) + 1
            else:
                count = len(control.find_elements(By.TAG_NAME, "option"))
            name = driver.execute_script("return arguments[0].parentNode.firstChild.textContent.trim()", control)
            where = f"explorer {n} ({root.get_attribute('id')}), control {name!r}"
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", control)
            # go to the first value, then step up through every value: a reader's keyboard moves
            for _ in range(count):
                control.send_keys(Keys.HOME if is_range else Keys.ARROW_UP)
            label_js = "const s = arguments[0].parentNode.querySelector('.value'); return s ? s.textContent : null;"
            for _ in range(count - 1):
                before_value, before_src = control.get_attribute("value"), img.get_attribute("src")
                before_label = driver.execute_script(label_js, control)
                control.send_keys(Keys.ARROW_RIGHT if is_range else Keys.ARROW_DOWN)
                after_value = control.get_attribute("value")
                moves += 1
                if after_value == before_value:
                    failures.append(f"{where}: the key press did not move it from value {before_value}")
                    break
                src, decoded = driver.execute_script(
                    "const i = arguments[0]; return [i.src, i.complete && i.naturalWidth > 0];", img)
                if src == before_src:
                    failures.append(f"{where}: the image did not change when it moved {before_value} -> {after_value}")
                elif not decoded:
                    failures.append(f"{where}: the image for value {after_value} did not decode")
                if is_range and driver.execute_script(label_js, control) in (None, before_label):
                    failures.append(f"{where}: the slider's value label did not follow {before_value} -> {after_value}")
    return len(roots), moves, failures


def check_page(driver, base: str, page: str, config: dict, shots: Path | None, source: dict,
               seen_known: set[str]) -> tuple[list[str], list[str]]:
    """Load one page and run its checks; returns (passed, failures) as short phrases."""
    passed, failures = [], []
    chapter = page.startswith("notebooks/")
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(f"{base}/{page}.html")
    driver.execute_script("window.scrollTo(0, 0)")

    # screenshot of the first screen, before anything is scrolled or moved
    if chapter and shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        time.sleep(0.5)  # let web fonts and the theme's layout settle
        driver.save_screenshot(str(shots / f"{Path(page).name}.png"))

    images = driver.execute_async_script(_IMAGES_JS)
    bad = [i for i in images if i["local"] and not (i["complete"] and i["width"] > 0)]
    foreign = [i for i in images if not i["local"] and i["host"] not in TOLERATED_HOSTS]
    for i in bad:
        failures.append(f"image not decoded: {i['src']}")
    for i in foreign:
        failures.append(f"image from an untolerated external host {i['host']}: {i['src']}")
    local = [i for i in images if i["local"]]
    if not bad and not foreign:
        passed.append(f"images {len(local)}/{len(local)} decoded"
                      + (f" (+{len(images) - len(local)} external)" if len(images) > len(local) else ""))
    if chapter and not local:
        failures.append("no figure on a chapter page")

    anchors = driver.execute_script(_ANCHORS_JS)
    broken = [a for a in anchors if not a["found"]]
    n_cite = sum(a["citation"] for a in anchors)
    for a in broken:
        failures.append(f"link #{a['id']} ({a['text']!r}) resolves to no element")
    if source["cites"] and n_cite == 0:
        failures.append("the source cites with {footcite} but the page has no citation link")
    if not broken and not (source["cites"] and n_cite == 0):
        passed.append(f"anchors {len(anchors)} resolve ({n_cite} citations)")

    if chapter:
        want = expected_colab(config, page)
        links = driver.execute_script(_LINKS_JS)
        badges = [x for x in links if x["badge"]]
        launch = [x for x in links if not x["inContent"]]
        if not badges:
            failures.append("no Colab badge")
        for x in links:
            if x["href"] != want:
                kind = "badge" if x["badge"] else "launch button" if not x["inContent"] else "link"
                failures.append(f"Colab {kind} points at {x['href']}, expected {want}")
        if badges and all(x["href"] == want for x in links):
            passed.append("Colab badge" + (" + launch button" if launch else "") + " -> " + want.split("/blob/")[1])

        n, moves, bad_moves = check_explorers(driver)
        failures += bad_moves
        if n < source["explorers"]:
            failures.append(f"{source['explorers']} static_explorer call(s) in the source but {n} explorer(s) "
                            "on the page")
        if n and not bad_moves:
            passed.append(f"explorers {n} ({moves} moves change the image)")

    errors, tolerated, known = console_errors(driver.get_log("browser"))
    failures += [f"console: {e}" for e in errors]
    seen_known.update(known)
    if not errors:
        hosts = sorted({_host(u) for m in tolerated for u in _URL.findall(m)})
        extra = [f"offline: {', '.join(hosts)}"] if hosts else []
        extra += [f"{len(known)} known toolchain message(s)"] if known else []
        passed.insert(0, "no JS errors" + (f" ({'; '.join(extra)})" if extra else ""))
    return passed, failures


def built_source(html_root: Path, page: str) -> dict:
    """What the page's source (the copy the build used, _sources/) promises: citations, explorers."""
    for ext in (".ipynb", ".md"):
        for path in (html_root / "_sources" / f"{page}{ext}", ROOT / f"{page}{ext}"):
            if path.is_file():
                text = path.read_text()
                code = ""
                if ext == ".ipynb":
                    cells = json.loads(text)["cells"]
                    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
                return {"cites": "{footcite}" in text, "explorers": code.count("static_explorer(")}
    return {"cites": False, "explorers": 0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html", type=Path, help="the built book, e.g. _build/html")
    ap.add_argument("--screenshots", type=Path, default=None,
                    help="where the first-screen screenshots go (default: <html>/../screenshots)")
    ap.add_argument("--page", action="append", default=None,
                    help="check only this page of _toc.yml (repeatable), e.g. notebooks/02_fcn")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    args = ap.parse_args(argv)

    html_root = args.html.resolve()
    if not (html_root / "index.html").is_file():
        print(f"browser_check: {args.html} has no index.html: build the book first (make book)", file=sys.stderr)
        return 2
    for exe in (args.chromium, args.chromedriver):
        if not Path(exe).is_file():
            print(f"browser_check: {exe} not found: apt-get install -y --no-install-recommends chromium "
                  "chromium-driver (or pass --chromium/--chromedriver)", file=sys.stderr)
            return 2
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("browser_check: selenium is missing: .venv/bin/python -m pip install 'selenium>=4.15'", file=sys.stderr)
        return 2
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    pages = toc_pages(ROOT / "_toc.yml")
    if args.page:
        unknown = [p for p in args.page if p not in pages]
        if unknown:
            print(f"browser_check: not in _toc.yml: {unknown}; pages: {pages}", file=sys.stderr)
            return 2
        pages = [p for p in pages if p in args.page]
    shots = (args.screenshots or html_root.parent / "screenshots").resolve()

    server, base = _serve(html_root)
    driver = _browser(args.chromium, args.chromedriver)
    all_failures, seen_known = [], set()
    try:
        for page in pages:
            html = html_root / f"{page}.html"
            if not html.is_file():
                all_failures.append(f"{page}: {html} was not built")
                print(f"FAIL {page}: not built")
                continue
            try:
                passed, failures = check_page(driver, base, page, config, shots, built_source(html_root, page),
                                              seen_known)
            except Exception as exc:  # a page that breaks the checker is a failed page, the others still run
                passed, failures = [], [f"the check raised {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"]
            size = html.stat().st_size
            status = "ok  " if not failures else "FAIL"
            print(f"{status} {page} ({size:,} bytes): " + "; ".join(passed), flush=True)
            all_failures += [f"{page}: {f}" for f in failures]
    finally:
        driver.quit()
        server.shutdown()
    for pattern, why in KNOWN_CONSOLE.items():
        if pattern in seen_known:
            print(f"known toolchain message tolerated: {pattern!r}: {why}")
        else:
            print(f"note: the known message {pattern!r} no longer appears: remove it from KNOWN_CONSOLE")
    if all_failures:
        print(f"\nbrowser_check: {len(all_failures)} failure(s):", file=sys.stderr)
        for f in all_failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print(f"browser_check: {len(pages)} pages passed; screenshots in {shots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
