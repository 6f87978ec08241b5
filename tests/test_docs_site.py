"""The docs site: built from a fresh clone with `tools/build_docs.py`, crawled for broken links, opened in headless Chromium.

Run: `.venv/bin/python -m pytest -q tests/test_docs_site.py` (needs Debian's `chromium`: `apt-get install -y chromium`).
`CONVCHAT_DOCS_FROM=worktree` builds from the working tree instead of a clone of HEAD (to check uncommitted notebooks).
Screenshots of the front page and of an API page are written to `_site_screenshots/`.
"""
import base64, functools, html.parser, http.server, json, os, re, shutil, struct, subprocess, sys, threading
from pathlib import Path
from urllib.parse import urljoin, urlsplit, unquote
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
import build_docs as bd, build_readme as br

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-sync',
                  '--disable-background-networking', '--disable-component-update', '--disable-default-apps',
                  '--disable-extensions', '--hide-scrollbars', '--mute-audio']
SHOTS = ROOT/'_site_screenshots'

# ---------------------------------------------------------------------------------------------------------------------
# Fast checks of the notebook -> markdown step

def _cell(src, outputs=(), typ='code'):
    return dict(cell_type=typ, source=src, metadata={}, **({'outputs': list(outputs)} if typ == 'code' else {}))

_links = bd.DocLinks('https://convchat.github.io/convchat', {'00_core.ipynb': 'core.md', '02_data.ipynb': 'data.md'})
_png = base64.b64encode(b'\x89PNG fake').decode()

def test_nb2md_directives_outputs_and_anchors():
    nb = dict(cells=[
        _cell('---\ntitle: Core\ndescription: Errors and `atomic_write_text`\noutput-file: core.html\n---', typ='raw'),
        _cell('See [`atomic_write_text`](https://convchat.github.io/convchat/core.html#atomic_write_text), '
              '[data](02_data.ipynb#load) and [elsewhere](https://example.com/x.html).', typ='markdown'),
        _cell('#| echo: false\n#| output: asis\nshow_doc(atomic_write_text)', [dict(output_type='execute_result', metadata={},
              data={'text/markdown': '---\n\n[source](https://github.com/x){target="_blank"}\n\n### atomic_write_text\n\n*Write.*',
                    'text/plain': 'x'})]),
        _cell('#| include: false\nsecret()', [dict(output_type='stream', name='stdout', text='hidden\n')]),
        _cell('#| output: false\nquiet()', [dict(output_type='stream', name='stdout', text='not shown\n')]),
        _cell('#| code-fold: show\n#| code-summary: "Exported source"\ndef f(): pass'),
        _cell('plot()', [dict(output_type='stream', name='stderr', text='10%\r50%\r100%|done\n'),
                         dict(output_type='display_data', metadata={}, data={'image/png': _png, 'text/plain': '<Figure>'})]),
        _cell('::: {.callout-tip}\nUse the tiny model.\n:::', typ='markdown'),
    ])
    md, images = bd.nb2md(nb, 'core.md', links=_links)
    assert md.startswith('# Core\n\nErrors and `atomic_write_text`\n{ .nb-description }'), md[:80]
    assert '[`atomic_write_text`](core.md#atomic_write_text)' in md
    assert '[data](data.md#load)' in md and '(https://example.com/x.html)' in md
    assert '### atomic_write_text { #atomic_write_text .nb-api }' in md and 'show_doc(' not in md
    assert 'secret' not in md and 'hidden' not in md and 'quiet()' in md and 'not shown' not in md
    assert '???+ nb-source "Exported source"\n\n    ```python\n    def f(): pass\n    ```' in md
    assert '``` { .text .nb-output .nb-stderr }\n100%|done\n```' in md  # progress redraws collapse to the last one
    assert images == {'core_files/figure-1.png': b'\x89PNG fake'} and '![](core_files/figure-1.png)' in md
    assert '!!! tip\n    Use the tiny model.' in md

def test_readme_flavour_links_to_the_notebooks():
    nb = dict(cells=[_cell('---\ntitle: convchat\ndescription: Chat\n---', typ='raw'),
                     _cell('[data](02_data.ipynb) [load](https://convchat.github.io/convchat/data.html#load)', typ='markdown'),
                     _cell('print(2)', [dict(output_type='stream', name='stdout', text='2\n')])])
    md, _ = bd.nb2md(nb, 'index.md', flavor='gfm', links=bd.DocLinks(_links.doc_url, _links.page_of, nbs='nbs/'))
    assert md == '# convchat\n\n> Chat\n\n[data](nbs/02_data.ipynb) [load](nbs/02_data.ipynb)\n\n```python\nprint(2)\n```\n\n```text\n2\n```\n', md

def test_readme_links_resolve():
    "Every link in README.md is a file of this repository or an address outside it (no hosted docs that do not exist)"
    import re
    links = re.findall(r'\]\(([^)\s]+)\)', (ROOT/'README.md').read_text())
    assert links and not [u for u in links if 'convchat.github.io' in u], links
    missing = [u for u in links if '://' not in u and not (ROOT/u.partition('#')[0]).exists()]
    assert not missing, missing

def test_method_links_fall_back_to_their_class():
    pages = {'chat.md': '### ChatModel { #chatmodel .nb-api }\n[gen](#chatmodel.generate)',
             'serve.md': '[a](chat.md#chatmodel._step) [b](chat.md#nope.x) [c](chat.md#chatmodel) [`_f`](chat.md#_f) [d](chat.md#gone)'}
    assert bd.link_methods_to_classes(pages) == {'chat.md': '### ChatModel { #chatmodel .nb-api }\n[gen](#chatmodel)',
        'serve.md': '[a](chat.md#chatmodel) [b](chat.md#nope.x) [c](chat.md#chatmodel) `_f` [d](chat.md#gone)'}  # the rest fails the strict build

def test_doc_notebooks_order(tmp_path):
    for n in ['07_cli', '00_core', 'index', '04a_optimize', '04_convert', '_scratch', '90_benchmarks']: (tmp_path/f'{n}.ipynb').write_text('{}')
    assert [f.stem for f in bd.doc_notebooks(tmp_path)] == ['index', '00_core', '04_convert', '04a_optimize', '07_cli', '90_benchmarks']
    assert bd.page_name(tmp_path/'04a_optimize.ipynb', tmp_path) == 'optimize.md'

def test_readme_in_sync_with_index():
    "README.md is what `python tools/build_readme.py` makes from nbs/index.ipynb"
    if not (ROOT/'nbs'/'index.ipynb').exists(): pytest.skip('nbs/index.ipynb does not exist yet')
    md, _ = br.readme(ROOT)
    assert (ROOT/'README.md').exists(), 'no README.md: run `.venv/bin/python tools/build_readme.py`'
    assert (ROOT/'README.md').read_text() == md, 'README.md is stale: run `.venv/bin/python tools/build_readme.py`'

# ---------------------------------------------------------------------------------------------------------------------
# The site, built once from a fresh clone

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('docs')
    if os.environ.get('CONVCHAT_DOCS_FROM') == 'worktree' or not (ROOT/'.git').exists(): src = ROOT
    else:
        src = tmp/'clone'
        subprocess.run(['git', 'clone', '--quiet', '--no-hardlinks', str(ROOT), str(src)], check=True)
    dest = tmp/'site'
    r = subprocess.run([sys.executable, 'tools/build_docs.py', '--dest', str(dest)], cwd=src, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f'the docs build failed:\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}'
    print(r.stdout)
    return dict(dest=dest, src=src, nbs=bd.doc_notebooks(src/'nbs'))

class _Page(html.parser.HTMLParser):
    "The ids a page defines and the URLs it refers to"
    def __init__(self):
        super().__init__(); self.ids, self.refs = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name'):
            if a.get(k): self.ids.add(a[k])
        for k in ('href', 'src'):
            if a.get(k) is not None and tag in ('a', 'img', 'link', 'script', 'source', 'iframe'): self.refs.append((tag, a[k]))

@functools.lru_cache(maxsize=None)
def _parse(path:Path)->_Page:
    p = _Page(); p.feed(path.read_text(errors='replace')); return p

def test_every_notebook_is_a_page(site):
    dest = site['dest']
    for nb in site['nbs']:
        page = dest/bd.page_name(nb, site['src']/'nbs').replace('.md', '.html')
        assert page.exists(), f'{nb.name}: no page {page.name}'
        assert '<h1' in page.read_text(), f'{page.name} has no title'
    assert (dest/'index.html').exists() and (dest/'benchmarks.html').exists()
    idx = json.loads((dest/'search'/'search_index.json').read_text())
    assert any('cache_dir' in d['location'] for d in idx['docs']), 'API entries are not in the search index'

def test_no_broken_internal_links(site):
    dest, base = site['dest'], '/convchat/'
    pages, broken = sorted(dest.rglob('*.html')), []
    for page in pages:
        for tag, ref in _parse(page).refs:
            u = urlsplit(ref)
            if u.scheme or u.netloc or ref.startswith(('mailto:', 'javascript:', 'data:')): continue
            path = unquote(u.path)
            if path.startswith(base): target = dest/path[len(base):]
            elif path.startswith('/'): broken.append(f'{page.name}: {ref} (absolute path outside the site)'); continue
            else: target = (page.parent/path) if path else page
            if target.is_dir(): target = target/'index.html'
            if not target.resolve().is_relative_to(dest.resolve()) or not target.exists():
                broken.append(f'{page.relative_to(dest)}: <{tag}> {ref} (no such file)'); continue
            if u.fragment and target.suffix == '.html' and unquote(u.fragment) not in _parse(target).ids:
                broken.append(f'{page.relative_to(dest)}: <{tag}> {ref} (no such anchor)')
    assert len(pages) >= len(site['nbs']) and not broken, '\n'.join(broken[:50])

def test_api_entries_have_anchors(site):
    "Every public function and class (in its module's `__all__`) has the anchor its links target; internals have none"
    import ast
    ns = {}
    exec((site['src']/'convchat'/'_modidx.py').read_text(), ns)
    def public(mod):
        t = ast.parse((site['src']/(mod.replace('.', '/') + '.py')).read_text())
        return {e.value for s in t.body if isinstance(s, ast.Assign) and getattr(s.targets[0], 'id', '') == '__all__' for e in s.value.elts}
    missing, n = [], 0
    for mod, syms in ns['d']['syms'].items():
        pub = public(mod)
        for sym, (url, _) in syms.items():
            nm = sym[len(mod)+1:]
            if nm.startswith('_') or '.' in nm or nm not in pub: continue
            page, frag = url.split('#')
            if not (site['dest']/page).exists(): continue
            n += 1
            if frag not in _parse(site['dest']/page).ids: missing.append(f'{sym}: {url}')
    assert n and not missing, f'{n} symbols checked; no anchor for:\n' + '\n'.join(missing)

# ---------------------------------------------------------------------------------------------------------------------
# In the browser

@pytest.fixture(scope='module')
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site['dest']))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown(); srv.server_close()

def _chromium(tmp_path, *args, timeout=90):
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if not exe: pytest.fail('Chromium is not installed: `apt-get install -y chromium` (Debian)')
    cmd = [exe, *CHROMIUM_FLAGS, f'--user-data-dir={tmp_path/"chromium-profile"}', *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

def test_every_page_loads_in_chromium(site, served, tmp_path):
    problems = []
    for page in sorted(site['dest'].rglob('*.html')):
        rel = page.relative_to(site['dest']).as_posix()
        if rel == '404.html': continue
        r = _chromium(tmp_path, '--enable-logging=stderr', '--v=0', '--virtual-time-budget=5000', '--dump-dom', served + rel)
        dom = r.stdout
        if r.returncode or '<h1' not in dom or 'md-sidebar' not in dom or 'md-content' not in dom:
            problems.append(f'{rel}: did not render (exit {r.returncode}, {len(dom)} bytes of DOM)\n{r.stderr[-800:]}')
        errs = [l for l in r.stderr.splitlines() if 'CONSOLE' in l and re.search(r'Uncaught|Failed to load|404', l)]
        if errs: problems.append(f'{rel}: errors in the browser console:\n' + '\n'.join(errs[:5]))
    assert not problems, '\n'.join(problems)

def _png_size(p:Path):
    b = p.read_bytes()
    assert b[:8] == b'\x89PNG\r\n\x1a\n', f'{p} is not a PNG'
    return struct.unpack('>II', b[16:24])

def test_screenshots(site, served, tmp_path):
    "Screenshots of the front page and of an API page, for review, in `_site_screenshots/`"
    SHOTS.mkdir(exist_ok=True)
    api = 'core.html' if (site['dest']/'core.html').exists() else next(
        p.name for p in sorted(site['dest'].glob('*.html')) if 'nb-api' in p.read_text())
    for name, url in [('front-page', 'index.html'), ('api-page', api)]:
        out = SHOTS/f'{name}.png'
        out.unlink(missing_ok=True)
        r = _chromium(tmp_path, '--window-size=1280,900', '--virtual-time-budget=5000', f'--screenshot={out}', served + url)
        assert r.returncode == 0 and out.exists(), f'no screenshot of {url}: {r.stderr[-800:]}'
        assert _png_size(out) == (1280, 900)
        assert out.stat().st_size > 20_000, f'{out} looks blank ({out.stat().st_size} bytes)'
