"""The report site: built with warnings as errors (scripts/build_docs.sh), then every page loaded in headless Chromium:
no console errors, no broken internal links, every image loaded, nothing fetched from another host. The pretraining
chapter is read at desktop (1280 px) and phone (390 px) widths: a wide column, no code block cut off, the "show code"
toggles open and close, the light/dark switch works. Screenshots of the front page and of the pretraining chapter at
both widths are kept in docs/_build/screenshots/. Figures and tables of the latest tiny run (papermill_runs/tiny-cpu/),
when there is one, are checked against the run's own artifacts. Without Chromium (or selenium) the browser check is
skipped with a notice, except under CI=true, where it is required."""
import functools, html, html.parser, importlib.util, json, os, re, shutil, subprocess, sys, tempfile, threading, warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT/'docs'/'_build'/'html'
SHOTS = ROOT/'docs'/'_build'/'screenshots'
RUN = ROOT/'papermill_runs'/'tiny-cpu'
CHAPTER = '06_pretrain'        # the chapter read at both widths (the longest code lines of the report)
WIDTHS = {'desktop': (1280, 1000), 'phone': (390, 844)}
CI = os.environ.get('CI', '').lower() == 'true'
CHROMIUM = next((p for p in (os.environ.get('CHROMIUM'), shutil.which('chromium'), '/usr/bin/chromium') if p and Path(p).exists()), None)
CHROMEDRIVER = next((p for p in (os.environ.get('CHROMEDRIVER'), shutil.which('chromedriver'), '/usr/bin/chromedriver') if p and Path(p).exists()), None)
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
         '--window-size=1280,1600']


def need(ok: bool, what: str):
    "Skip with a visible notice when a tool is missing, or fail under CI=true."
    if ok: return
    msg = f"docs check needs {what}"
    if CI: pytest.fail(f"{msg} (required with CI=true)")
    warnings.warn(f"NOTICE: {msg}; skipped outside CI")
    print(f"\nNOTICE: {msg}; skipped outside CI", file=sys.stderr)
    pytest.skip(f"NOTICE: {msg}; skipped outside CI")


@pytest.fixture(scope='module')
def site():
    need(importlib.util.find_spec('sphinx') is not None and importlib.util.find_spec('myst_nb') is not None,
         'sphinx and myst-nb (pip install sphinx myst-nb sphinxcontrib-bibtex)')
    r = subprocess.run(['bash', str(ROOT/'scripts'/'build_docs.sh')], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, 'BIN': str(Path(sys.executable).parent)}, timeout=900)
    assert r.returncode == 0, f"docs build failed (warnings are errors):\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}"
    return HTML


def pages(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob('*.html') if not {'_static', '_sources'} & set(p.relative_to(root).parts))


def _run_manifest():
    try: return json.loads((RUN/'manifest.json').read_text())
    except (OSError, ValueError): return None


def _stage_files(st: dict, name: str) -> tuple[list[str], list[str]]:
    "A stage's figures (any depth) and its Markdown tables (top of its directory), from the manifest's artifacts."
    arts = [a['path'] if isinstance(a, dict) else a for a in st.get('artifacts') or []]
    figs = [a for a in arts if Path(a).suffix.lower() in {'.png', '.svg', '.jpg', '.jpeg', '.gif'} and (RUN/a).is_file()]
    mds = [a for a in arts if Path(a).parent == Path(name) and Path(a).suffix == '.md' and (RUN/a).is_file()]
    return figs, mds


def test_site_content(site):
    idx = (site/'index.html').read_text()
    chapters = sorted(p.stem for p in (ROOT/'nbs').glob('[0-9]*.ipynb'))
    assert chapters and all((site/f"{c}.html").exists() for c in chapters)
    pos = [idx.find(f'href="{c}.html"') for c in chapters]
    assert all(p > 0 for p in pos) and pos == sorted(pos), 'chapters missing from the front page or out of order'
    api = (site/'api'/'stablecode.run.html').read_text()
    assert 'stablecode.run.LaunchConfig' in api and 'launch_commands' in api      # autodoc of the exported package
    refs = (site/'references.html').read_text()
    for needle in ('Stable Code Technical Report', '2404.01226', 'SelfCodeAlign', 'StarCoder2-Instruct', 'PanGu-Coder2',
                   '2307.14936', 'StarCoder', 'Code Llama'):
        assert needle in refs, needle
    for c in chapters:
        page = (site/f"{c}.html").read_text()
        # every chapter opens with its box and offers its source notebook for download
        assert 'chapter-box' in page and 'What this chapter shows' in page, c
        assert re.search(rf'href="_downloads/[0-9a-f]+/{c}\.ipynb"', page), f"{c}: no download of the source notebook"
        # every #| export cell is folded behind a toggle (MyST-NB's hide-input renders a <details> above the input)
        run_nb = Path(os.environ.get('DOCS_RUN', ROOT/'papermill_runs'/'tiny-cpu'))/f"{c}.ipynb"
        nb = json.loads((run_nb if run_nb.exists() else ROOT/'nbs'/f"{c}.ipynb").read_text())   # the notebook rendered
        exports = [c_ for c_ in nb['cells'] if c_['cell_type'] == 'code' and
                   re.search(r'^\s*#\|\s*export', ''.join(c_['source']), re.M) and
                   any(l.strip() and not l.lstrip().startswith('#|') for l in ''.join(c_['source']).splitlines())]
        folded = len(re.findall(r'<details class="[^"]*\bhide above-input\b', page))
        assert folded >= len(exports), f"{c}: {len(exports)} export cells but {folded} folded cells"
    for page in pages(site):   # offline: nothing is loaded from another host (no CDN fonts, scripts or styles)
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//[^"]+"', page.read_text())
        assert not remote, f"{page.name} loads remote assets: {remote[:3]}"
    m = _run_manifest()
    results = (site/'results.html').read_text()
    assert 'Results of the tiny run' in results
    if not m:
        assert 'No executed tiny run was found' in results
        return
    # the results page names the run's commit and package versions, as recorded in its manifest
    sha = ((m.get('git') or {}).get('sha') or '')[:12]
    assert sha and sha in results
    for name, v in (m.get('packages') or {}).items():
        if v: assert f"{name} {v}" in results, f"package version {name} {v} missing from the results page"
    for name, st in (m.get('stages') or {}).items():
        chapter = Path(st.get('notebook') or '').stem
        figs, mds = _stage_files(st, name)
        assert f'id="stage-{name}"' in results, f"results page has no section for stage {name}"
        for f in figs:                    # every figure a stage saved: on the results page and in its chapter
            assert Path(f).name.split('.')[0] in results, f
            if (RUN/f"{chapter}.ipynb").exists() and (site/f"{chapter}.html").exists():
                assert Path(f).stem in (site/f"{chapter}.html").read_text(), f"{chapter} does not show {f}"
        text = html.unescape(re.sub(r'<[^>]+>', '', results))      # the page's text ('pass@1' is written pass&#64;1)
        for t in mds:                     # every Markdown table a stage wrote: its header cells on the results page
            head = next((l for l in (RUN/t).read_text().splitlines() if l.startswith('|')), None)
            if head:
                for cell in [c_.strip() for c_ in head.strip('|').split('|') if c_.strip()][:3]:
                    assert re.sub(r'[`*]', '', cell) in text, f"{t}: header {cell!r}"
        if (RUN/f"{chapter}.ipynb").exists() and (site/f"{chapter}.html").exists():
            page = (site/f"{chapter}.html").read_text()
            box = page[page.index('What this chapter shows'):]
            box = box[:box.index('</div>')]
            assert name in box and (((st.get('git') or {}).get('sha') or '')[:12] in box), f"{chapter}: box without the run's stage"


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.ids = set()
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ('id', 'name') and v: self.ids.add(v)


@functools.lru_cache(maxsize=None)
def ids_of(path: Path) -> frozenset:
    p = _Ids(); p.feed(path.read_text(errors='replace')); return frozenset(p.ids)


def serve(root: Path):
    handler = functools.partial(type('Quiet', (SimpleHTTPRequestHandler,), {'log_message': lambda *a: None}),
                                directory=str(root))
    srv = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _driver(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--user-data-dir={tmp_path/'profile'}"]: opts.add_argument(f)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def _viewport(driver, width: int, height: int):
    "Emulate a screen of this size (a phone width is below the window sizes headless Chromium allows)."
    driver.execute_cdp_cmd('Emulation.setDeviceMetricsOverride', {'width': width, 'height': height,
                           'deviceScaleFactor': 1, 'mobile': width < 600})


_CUT_OFF = """return Array.from(document.querySelectorAll('.bd-article pre'))
  .filter(p => p.offsetParent !== null && p.scrollWidth > p.clientWidth + 1)
  .map(p => [p.scrollWidth, p.clientWidth, p.textContent.split('\\n').sort((a, b) => b.length - a.length)[0].slice(0, 80)])"""


def test_site_in_headless_chromium(site, tmp_path):
    need(CHROMIUM is not None and CHROMEDRIVER is not None, 'Chromium and chromedriver (Debian: chromium chromium-driver)')
    need(importlib.util.find_spec('selenium') is not None, 'selenium (pip install selenium)')
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    srv = serve(site)
    base = f"http://127.0.0.1:{srv.server_address[1]}/"
    driver = _driver(tmp_path)
    problems, n_img, n_links = [], 0, 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob('*.png'): old.unlink()
    try:
        driver.set_page_load_timeout(60)
        all_pages = pages(site)
        assert len(all_pages) >= 10
        for page in all_pages:
            rel = page.relative_to(site).as_posix()
            driver.get(base + rel)
            for e in driver.get_log('browser'):
                if e['level'] == 'SEVERE': problems.append(f"{rel}: console error: {e['message']}")
            imgs = driver.execute_script(
                "return Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0])")
            n_img += len(imgs)
            problems += [f"{rel}: image not loaded: {src}" for src, ok in imgs if not ok]
            hrefs = driver.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
            for h in hrefs:
                if not h.startswith(base): continue
                n_links += 1
                url, frag = urldefrag(h)
                path = unquote(urlparse(url).path)[1:] or 'index.html'
                target = site/path
                if target.is_dir(): target = target/'index.html'
                if not target.is_file(): problems.append(f"{rel}: broken link {h}"); continue
                if frag and target.suffix == '.html' and unquote(frag) not in ids_of(target):
                    problems.append(f"{rel}: broken anchor {h}")
        assert not problems, '\n'.join(sorted(set(problems))[:50])

        # The pretraining chapter as a reader sees it, at desktop and phone widths.
        for label, (w, h) in WIDTHS.items():
            _viewport(driver, w, h)
            driver.get(base + 'index.html')
            assert driver.execute_script('return window.innerWidth') == w
            driver.save_screenshot(str(SHOTS/f"front-{w}.png"))
            driver.get(base + f"{CHAPTER}.html")
            article = driver.execute_script("return document.querySelector('.bd-article').getBoundingClientRect().width")
            assert article >= (0.55 if w >= 1000 else 0.85) * w, f"{label}: the reading column is {article:.0f} px of {w}"
            assert driver.execute_script('return document.documentElement.scrollWidth') <= w + 1, \
                f"{label}: the page scrolls sideways"
            driver.save_screenshot(str(SHOTS/f"{CHAPTER}-{w}.png"))
            # folded implementation cells: closed, their code not rendered; a click opens one, a second closes it
            toggles = driver.find_elements(By.CSS_SELECTOR, '.bd-article details.hide.above-input')
            assert len(toggles) >= 5, f"{label}: {len(toggles)} folded cells"
            assert not any(t.get_attribute('open') for t in toggles)
            first = toggles[0]
            code = first.find_element(By.CSS_SELECTOR, 'pre')
            assert not code.is_displayed()
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", first)
            first.find_element(By.TAG_NAME, 'summary').click()
            assert first.get_attribute('open') is not None
            WebDriverWait(driver, 10).until(lambda d: code.is_displayed() and code.size['height'] > 0)  # it fades in
            first.find_element(By.TAG_NAME, 'summary').click()
            assert first.get_attribute('open') is None and not code.is_displayed()
            # no code block is cut off, folded ones included (all opened)
            driver.execute_script("document.querySelectorAll('.bd-article details').forEach(d => d.open = true)")
            WebDriverWait(driver, 10).until(lambda d: d.execute_script(   # the opened code has faded in
                "return document.getAnimations().every(a => a.playState !== 'running')"))
            n_pre = driver.execute_script("return document.querySelectorAll('.bd-article pre').length")
            cut = driver.execute_script(_CUT_OFF)
            assert n_pre >= 20 and not cut, f"{label}: {len(cut)} of {n_pre} code blocks cut off, e.g. {cut[:3]}"
            driver.save_screenshot(str(SHOTS/f"{CHAPTER}-{w}-code-open.png"))
            imgs = driver.execute_script(
                "return Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0])")
            assert all(ok for _, ok in imgs), f"{label}: images not loaded: {[s for s, ok in imgs if not ok]}"
        # light and dark mode: the theme switch changes the page's theme
        _viewport(driver, *WIDTHS['desktop'])
        driver.get(base + f"{CHAPTER}.html")
        themes = [driver.execute_script("return document.documentElement.dataset.theme")]
        bg = [driver.execute_script("return getComputedStyle(document.body).backgroundColor")]
        for mode in ('dark', 'light'):  # the switch is a menu: System Settings, Light, Dark
            driver.find_element(By.CSS_SELECTOR, '.theme-switch-button').click()
            WebDriverWait(driver, 10).until(
                lambda d: d.find_element(By.CSS_SELECTOR, f'.theme-change-button[data-mode="{mode}"]').is_displayed())
            driver.find_element(By.CSS_SELECTOR, f'.theme-change-button[data-mode="{mode}"]').click()
            themes.append(driver.execute_script("return document.documentElement.dataset.theme"))
            bg.append(driver.execute_script("return getComputedStyle(document.body).backgroundColor"))
        assert themes[1:] == ['dark', 'light'] and bg[1] != bg[2], (themes, bg)
    finally:
        driver.quit(); srv.shutdown()
    shots = sorted(SHOTS.glob('*.png'))
    print(f"\nchecked {len(all_pages)} pages, {n_links} internal links, {n_img} images; screenshots in {SHOTS}: "
          + ', '.join(p.name for p in shots))
    for w, _ in WIDTHS.values():
        for name in ('front', CHAPTER):
            shot = SHOTS/f"{name}-{w}.png"
            assert shot.exists() and shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    if (site/'_images').exists() or 'tiny-loss.png' in (site/'results.html').read_text():
        assert n_img > 0
