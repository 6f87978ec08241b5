"""Build convchat's documentation site without Quarto: `python tools/build_docs.py` writes `_site/`.

Why this exists: nbdev renders its docs with Quarto, and Quarto's PyPI package downloads a binary from the internet,
which some machines (ours among them) cannot do. `nbdev_docs` and `nbs/_quarto.yml` stay as they are for people who
have Quarto. This script builds the same site from the package registries alone:

1. **Execute** every notebook the way `nbdev_test` does (execnb's `CaptureShell`, cells flagged `#| slow` and
   `#| eval: false` skipped), so pages show outputs and plots. Results are cached in `build/docs_cache/`, keyed by the
   notebook, the package source and the fixtures, so a rebuild after editing one notebook re-runs only that one.
2. **Process** each executed notebook with nbdev's own `FilterDefaults`, what `nbdev_docs` hands to Quarto:
   `show_doc` cells added after exports and rendered, `#| hide` and `#| export` cells removed, directives stripped,
   backticked symbols linked to their API entries. One change: a cell that mixes imports with other code contributes
   only its imports to the fresh shell that renders `show_doc`, and `#| slow` cells don't run there
   (see `_exec_show_docs_lean`).
3. **Convert** the processed notebook to markdown (this file's `nb2md`): the part Quarto would do. It honours the Quarto
   directives nbdev leaves behind (`echo`, `output`, `include`, `code-fold`), writes plots as image files, gives every
   API entry the anchor nbdev's symbol index links to (`core.html#atomic_write_text`), and turns links to the hosted
   docs into links between pages.
4. **Render** with MkDocs and the Material theme, in `--strict` mode so a broken link or anchor fails the build.
   Material was chosen because it gives, from configuration alone (`mkdocs.yml`), the things Quarto's nbdev theme gives:
   a sidebar in notebook order, a table of contents per page, client-side search, highlighted code with copy buttons,
   light and dark themes. The hand-written part is the notebook-to-markdown step above (nbconvert's markdown exporter
   knows neither nbdev's directives nor its anchors), about 200 lines.

Page names follow nbdev's (`00_core.ipynb` -> `core.html`), so links from nbdev's symbol index work on both sites.
"""
from __future__ import annotations
import argparse, base64, concurrent.futures as cf, hashlib, json, multiprocessing as mp, os, re, shutil, subprocess, sys, time
from pathlib import Path

_re_ansi = re.compile(r'\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])')
_re_directive = re.compile(r'^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_callouts = dict(note='note', tip='tip', warning='warning', important='danger', caution='warning')

# ---------------------------------------------------------------------------------------------------------------------
# Which notebooks, in what order

def project_root(start:Path|str|None=None)->Path:
    "The folder holding `pyproject.toml`, searching up from `start` (default: this file's repository)"
    p = Path(start or Path(__file__).parent).resolve()
    for d in [p, *p.parents]:
        if (d/'pyproject.toml').exists(): return d
    raise FileNotFoundError(f'no pyproject.toml above {p}')

def doc_notebooks(nbs:Path)->list[Path]:
    "Notebooks in `nbs` that become pages: `index.ipynb` first, then by name (the numbering is the reading order)"
    nbs = Path(nbs)
    fs = [f for f in nbs.rglob('*.ipynb')
          if not any(part.startswith(('_', '.')) for part in f.relative_to(nbs).parts)]
    return sorted(fs, key=lambda f: (f.relative_to(nbs).with_suffix('').as_posix() != 'index', f.relative_to(nbs).as_posix()))

def page_name(nb:Path, nbs:Path)->str:
    "The page `nb` becomes, as nbdev names it (`00_core.ipynb` -> `core.md`, served as `core.html`)"
    from nbdev.config import nbpath2html
    return nbpath2html(Path(nb).relative_to(nbs)).with_suffix('.md').as_posix()

# ---------------------------------------------------------------------------------------------------------------------
# Execute and process one notebook (runs in a worker process)

def _sha(*paths:Path)->str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode()); h.update(p.read_bytes() if p.is_file() else b'')
    return h.hexdigest()

def _inputs(root:Path, nb:Path)->list[Path]:
    "Files whose change should re-execute `nb`: itself, the package source, notebook fixtures, benchmark results"
    from nbdev.config import get_config
    cfg = get_config(root)
    fs = [nb, *sorted(Path(cfg.lib_path).rglob('*.py'))]
    fs += sorted(f for f in Path(cfg.nbs_path).rglob('*') if f.is_file() and f.suffix != '.ipynb' and '_proc' not in f.parts
                 and not any(p.startswith('.') for p in f.relative_to(cfg.nbs_path).parts))
    if 'benchmark' in nb.stem: fs += sorted(f for f in (root/'benchmarks').rglob('*') if f.is_file())
    return fs

def execute_nb(nb_path:Path, skip_flags=('slow',)):
    "Run `nb_path` as `nbdev_test` does (flagged and `eval: false` cells skipped); return it with outputs"
    from nbdev.process import NBProcessor
    from nbdev.test import _skip_cell
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    nb_path = Path(nb_path).absolute()
    nb = NBProcessor(nb_path, rm_directives=False, process=True).nb
    k, skip, cur = CaptureShell(nb_path), _skip_cell(nb, list(skip_flags), None), [None]
    def pre(cell):
        cur[0] = cell
        return skip(cell)
    os.environ['IN_TEST'] = '1'
    try:
        with working_directory(nb_path.parent): k.run_all(nb, exc_stop=True, preproc=pre)
    except BaseException as e: exc = e
    else: exc = k.exc
    if exc is not None:
        src = cur[0].source if cur[0] is not None else '?'
        raise RuntimeError(f'{nb_path.name}: a cell failed while the docs were built:\n{src}\n{type(exc).__name__}: {exc}')
    return nb

def _exec_show_docs_lean():
    "nbdev's `exec_show_docs`, except that it runs only the imports of a cell that mixes imports with tests, and no flagged cell"
    # `exec_show_docs` re-runs, in a fresh shell, every export cell, every `show_doc` cell and every cell containing an
    # import statement, so that `show_doc` can see the names it documents. A cell that mixes an import with test code
    # (`from convchat.data import X` then `run('pipeline')`) is then run again without the cells it depends on, and
    # `#| slow` cells run too: a NameError, or the real model's whole pipeline inside a docs build (nbdev's FAQ: keep
    # imports in their own cells). The notebook has already been run in full, so here such a cell contributes only its
    # top-level imports, and its outputs stay those of the full run.
    import ast
    from nbdev.config import get_config
    from nbdev.processors import exec_show_docs, _do_eval, _show_docs
    flags = set(str(get_config().get('tst_flags', '')).split())
    defining = {'export', 'exports', 'exporti', 'exec_doc'}
    class exec_show_docs_lean(exec_show_docs):
        def __call__(self, cell):
            if not getattr(self.nb, 'has_docs_', None) or not hasattr(self, 'k') or cell.cell_type != 'code': return
            d = cell.directives_ or {}
            if flags & d.keys(): return
            if not (d.keys() & defining) and _do_eval(cell) and not _show_docs(cell.parsed_()):
                imps = [t for t in cell.parsed_() if isinstance(t, (ast.Import, ast.ImportFrom))]
                self.k.run_cell('\n'.join(ast.unparse(t) for t in imps))
                if self.k.exc: raise Exception(f'Error in cell {cell.idx_} (its imports):\n{cell.source}\n{type(self.k.exc).__name__}: {self.k.exc}')
                return
            super().__call__(cell)
    exec_show_docs_lean.__name__ = 'exec_show_docs'
    return exec_show_docs_lean

def _public_links_only():
    "Backticked names link to API entries only for the public surface (`__all__`): internals (`#| exporti`) have no entry"
    import importlib, nbdev.doclinks as dl
    if getattr(dl._build_lookup_table, 'public_only', False): return
    orig = dl._build_lookup_table
    def public(k:str, py:str)->bool:
        mod = py[:-3].replace('/', '.')
        name = k[len(mod)+1:] if k.startswith(mod + '.') else k
        try: return name.split('.')[0] in (getattr(importlib.import_module(mod), '__all__', None) or ())
        except Exception: return True
    def lookup(*args, **kwargs):
        entries, syms = orig(*args, **kwargs)
        return entries, {k: v for k, v in syms.items()
                         if not (isinstance(v, tuple) and str(v[1]).startswith('convchat/')) or public(k, v[1])}
    lookup.public_only = True
    dl._build_lookup_table = lookup

def process_nb(nb, nb_path:Path, skip:tuple=(), lean:bool=True):
    "Apply nbdev's own docs processors (`FilterDefaults`, as `nbdev_docs` does before Quarto), less those in `skip`"
    from fastcore.nbio import dict2nb, nb2dict
    from nbdev.config import get_config
    from nbdev.processors import FilterDefaults, exec_show_docs
    from fastcore.xtras import working_directory
    class _Filter(FilterDefaults):
        def base_procs(self):
            procs = [p for p in super().base_procs() if p.__name__ not in skip]
            return [_exec_show_docs_lean() if lean and p is exec_show_docs else p for p in procs]
    nb = dict2nb(nb2dict(nb))  # a fresh copy, as `nbdev_docs` reads the notebook from disk
    nb.path_ = str(nb_path)
    os.environ['IN_TEST'] = '1'
    _public_links_only()
    with working_directory(get_config(nb_path.parent).config_path): _Filter()(nb)
    return nb

def _work(args):
    "Worker: execute (unless cached or `execute` is off) and process one notebook; write the processed copy to `dest`"
    nb_path, dest, key, execute, keep_going = args
    from fastcore.nbio import read_nb, write_nb, nb2dict
    nb_path, dest = Path(nb_path), Path(dest)
    start, note = time.time(), ''
    keyf = dest.with_suffix('.key')
    if keyf.exists() and keyf.read_text() == key and dest.exists(): return str(nb_path), 'cached', 0.0, ''
    try: nb = execute_nb(nb_path) if execute else read_nb(nb_path)
    except Exception as e:
        if not keep_going: raise
        nb, note = read_nb(nb_path), f'{type(e).__name__}: {e}'
    try: nb = process_nb(nb, nb_path)
    except Exception as e:  # nbdev re-runs exports, imports and show_doc cells in a fresh shell: that failed
        if not keep_going: raise RuntimeError(f'{nb_path.name}: nbdev could not run its show_doc cells: {e}') from e
        nb, note = process_nb(nb, nb_path, skip=('exec_show_docs',)), (note + '\n' if note else '') + f'{type(e).__name__}: {e}'
    d = nb2dict(nb)
    if note: d.setdefault('metadata', {})['docs_build_error'] = note
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(d, indent=1, ensure_ascii=False))
    if execute and not note: keyf.write_text(key)
    else: keyf.unlink(missing_ok=True)
    return str(nb_path), 'failed' if note else ('executed' if execute else 'processed'), time.time()-start, note

# ---------------------------------------------------------------------------------------------------------------------
# Processed notebook -> markdown

def _src(x)->str: return ''.join(x) if isinstance(x, list) else (x or '')

def split_directives(source:str)->tuple[dict, str]:
    "Leading `#| key: value` lines of `source` as a dict, and the code after them"
    lines, d = source.splitlines(), {}
    while lines and (m := _re_directive.match(lines[0])):
        d[m.group(1)] = m.group(2).strip('"\''); lines.pop(0)
    return d, '\n'.join(lines).strip('\n')

def _clean_stream(text:str)->str:
    "Text as a terminal would leave it: ANSI codes dropped, progress-bar redraws (`\\r`) collapsed to the last state"
    text = _re_ansi.sub('', text)
    return '\n'.join(l.split('\r')[-1] if l.strip('\r') else '' for l in text.split('\n')).strip('\n')

def _fence(text:str, cls:str='', lang:str='text')->str:
    ticks = '`' * max(3, max((len(m) for m in re.findall(r'`+', text)), default=0) + 1)
    attrs = f' {{ .{lang} .{cls} }}' if cls else lang
    return f'{ticks}{attrs}\n{text}\n{ticks}'

class DocLinks:
    "Rewrites links aimed at the hosted docs (or at notebooks) into links between pages of this site, or (`nbs`) to the notebooks"
    def __init__(self, doc_url:str, page_of:dict[str,str], relative:bool=True,
                 nbs:str|None=None): # Link to the notebooks in this folder instead (the README: links that work on GitHub)
        self.doc_url, self.page_of, self.relative, self.nbs = doc_url.rstrip('/') + '/', page_of, relative, nbs
        self.nb_of = {v: k for k, v in page_of.items()}
    def html2page(self, url:str)->str|None:
        "`core.html#x` -> `core.md#x` when `core` is one of our pages"
        path, _, frag = url.partition('#')
        if path.endswith('.ipynb'): path = self.page_of.get(path.split('/')[-1], path)
        elif path.endswith('.html'): path = path[:-5] + '.md'
        if path.startswith('./'): path = path[2:]
        if path not in self.page_of.values(): return None
        return path + (f'#{frag}' if frag else '')
    def __call__(self, md:str, unlink_unknown:bool=False)->str:
        "`md` with doc links made relative; with `unlink_unknown`, links to pages that are not ours become plain text"
        def sub(m):
            bang, text, url = m.groups()
            if url.startswith(self.doc_url): rel = self.html2page(url[len(self.doc_url):])
            elif '://' not in url and url.split('#')[0].endswith(('.html', '.ipynb', '.md')): rel = self.html2page(url)
            else: return m.group(0)
            if rel is None:  # a page we don't have: docstrings of other libraries link into their own docs
                return text if unlink_unknown and not bang and '://' not in url else m.group(0)
            if self.nbs is not None: return f'{bang}[{text}]({self.nbs}{self.nb_of[rel.partition("#")[0]]})'
            return f'{bang}[{text}](' + (rel if self.relative else self.doc_url + rel.replace('.md', '.html', 1)) + ')'
        return re.sub(r'(!?)\[([^\]]*)\]\(([^)\s]+)\)', sub, md)

def _anchor_headings(md:str)->str:
    "Give the heading of a `show_doc` entry (`### atomic_write_text`) the id nbdev's symbol index links to"
    if not md.lstrip().startswith('---'): return md  # not a show_doc entry
    def sub(m):
        nm = m.group(2).replace('\\', '').strip('`')
        return f'{m.group(1)} {m.group(2)} {{ #{nm.lower()} .nb-api }}'
    return re.sub(r'^(#{2,6}) ([\w.\\]+)\s*$', sub, md, flags=re.M)

def _callouts2admonitions(md:str)->str:
    "Quarto callouts (`::: {.callout-note}`) as Material admonitions"
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        m = re.match(r'^:::+\s*\{\.callout-(\w+)([^}]*)\}\s*$', lines[i])
        if not m: out.append(lines[i]); i += 1; continue
        kind, title = _callouts.get(m.group(1), 'note'), re.search(r'title="([^"]*)"', m.group(2))
        body, i = [], i + 1
        while i < len(lines) and not re.match(r'^:::+\s*$', lines[i]): body.append(lines[i]); i += 1
        i += 1
        out.append(f'!!! {kind}' + (f' "{title.group(1)}"' if title else ''))
        out += ['    ' + l if l.strip() else '' for l in body]
    return '\n'.join(out)

class Page:
    "A notebook as a markdown page; images go to `files` (a folder name next to the page)"
    def __init__(self, files:str, flavor:str='mkdocs', links:DocLinks|None=None):
        self.files, self.flavor, self.links, self.images = files, flavor, links or (lambda s, **kw: s), {}
    def image(self, data:str, ext:str, binary=True)->str:
        name = f'{self.files}/figure-{len(self.images)+1}.{ext}'
        self.images[name] = base64.b64decode(data) if binary else data.encode()
        return f'![]({name})'
    def output(self, o)->str|None:
        typ = o.get('output_type')
        if typ == 'stream':
            text = _clean_stream(_src(o.get('text')))
            return _fence(text, 'nb-output' + (' .nb-stderr' if o.get('name') == 'stderr' else '') if self.flavor == 'mkdocs' else '') if text else None
        if typ == 'error':
            text = _clean_stream('\n'.join(o.get('traceback') or [f"{o.get('ename')}: {o.get('evalue')}"]))
            return _fence(text, 'nb-output .nb-error' if self.flavor == 'mkdocs' else '')
        data = o.get('data', {})
        if 'image/png' in data: return self.image(_src(data['image/png']), 'png')
        if 'image/jpeg' in data: return self.image(_src(data['image/jpeg']), 'jpg')
        if 'image/svg+xml' in data: return self.image(_src(data['image/svg+xml']), 'svg', binary=False)
        if 'text/markdown' in data:
            md = self.links(_src(data['text/markdown']), unlink_unknown=True)
            return _anchor_headings(md) if self.flavor == 'mkdocs' else md
        if 'text/html' in data:
            html = _src(data['text/html']).strip()
            return f'<div class="nb-html" markdown="0">\n{html}\n</div>' if self.flavor == 'mkdocs' else html
        if 'text/plain' in data:
            text = _clean_stream(_src(data['text/plain']))
            return _fence(text, 'nb-output' if self.flavor == 'mkdocs' else '') if text else None
    def code(self, cell)->list[str]:
        d, src = split_directives(_src(cell.get('source')))
        if d.get('include') == 'false': return []
        res = []
        if src and d.get('echo') != 'false':
            block = _fence(src, lang='python')
            if 'code-fold' in d and self.flavor == 'mkdocs':
                summary = d.get('code-summary', 'Code')
                block = ('???+' if d['code-fold'] == 'show' else '???') + f' nb-source "{summary}"\n\n' + \
                        '\n'.join('    ' + l if l else '' for l in block.splitlines())
            res.append(block)
        if d.get('output') != 'false':
            res += [o for o in map(self.output, cell.get('outputs', [])) if o]
        return res
    def markdown(self, nb)->str:
        parts = []
        for cell in nb['cells']:
            src = _src(cell.get('source'))
            if cell['cell_type'] == 'raw':
                fm = _frontmatter(src)
                if fm.get('title'): parts.append(f"# {fm['title']}")
                if fm.get('description'):
                    parts.append(self.links(fm['description']) + ('\n{ .nb-description }' if self.flavor == 'mkdocs' else ''))
                    if self.flavor != 'mkdocs': parts[-1] = '> ' + parts[-1]
            elif cell['cell_type'] == 'markdown':
                if src.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'):
                    if self.flavor != 'mkdocs': parts.append(src.strip())
                    continue
                md = self.links(src)
                parts.append(_callouts2admonitions(md) if self.flavor == 'mkdocs' else md)
            elif cell['cell_type'] == 'code': parts += self.code(cell)
        return '\n\n'.join(p.strip('\n') for p in parts if p and p.strip()) + '\n'

def _frontmatter(src:str)->dict:
    import yaml
    m = re.match(r'^---\s*\n(.*?)\n---\s*$', src.strip(), flags=re.S)
    return (yaml.safe_load(m.group(1)) or {}) if m else {}

def nb2md(nb, page:str, flavor:str='mkdocs', links:DocLinks|None=None)->tuple[str, dict[str, bytes]]:
    "Markdown for the processed notebook `nb` shown as `page`, and the image files it refers to (relative names)"
    p = Page(Path(page).stem + '_files', flavor, links)
    md = p.markdown(nb)
    err = nb.get('metadata', {}).get('docs_build_error')
    if err and flavor == 'mkdocs':
        body = '\n'.join('    ' + l for l in _fence(err).splitlines())
        md = re.sub(r'^(# .*\n)', lambda m: m.group(1) + f'\n!!! danger "This notebook failed while the docs were built: outputs or API entries may be missing"\n\n{body}\n', md, count=1)
    return md, p.images

def link_methods_to_classes(pages:dict[str, str])->dict[str, str]:
    "Point links at undocumented methods (`chat.md#chatmodel._step`) to their class's entry; unlink undocumented private names"
    # nbdev's symbol index lists every function and method, private ones included, but `show_doc` documents only the
    # public functions and classes (and methods added with `@patch` or shown explicitly), so on nbdev's own site these
    # links land on the page without an anchor. A link to anything else that is missing still fails the strict build.
    ids = {p: set(re.findall(r'\{ #([^\s}]+)', md)) for p, md in pages.items()}
    def sub(m, page):
        text, target, frag = m.group(1), m.group(2) or page, m.group(3)
        have = ids.get(target, set())
        if frag in have: return m.group(0)
        if '.' in frag and frag.split('.')[0] in have: return f"[{text}]({m.group(2) or ''}#{frag.split('.')[0]})"
        if frag.split('.')[-1].startswith('_') and target in ids: return text
        return m.group(0)
    return {p: re.sub(r'\[([^\]]*)\]\(([\w./-]+\.md)?#([\w.]+)\)', lambda m: sub(m, p), md) for p, md in pages.items()}

def nb_title(nb, default:str)->str:
    for cell in nb['cells']:
        if cell['cell_type'] == 'raw' and (t := _frontmatter(_src(cell['source'])).get('title')): return str(t)
    return default

# ---------------------------------------------------------------------------------------------------------------------
# The whole site

def build_docs(dest:str|Path='_site',      # Folder the site is written to (replaced)
               execute:bool=True,          # Run the notebooks for outputs and plots (cached); False: committed outputs only
               workers:int=2,              # Notebooks executed at once
               keep_going:bool=False,      # Render a notebook that fails to run without outputs instead of stopping
               root:str|Path|None=None,    # Repository root (default: the one holding this script)
               quiet:bool=False,
              )->Path:
    "Execute, process and convert every notebook, then render the site with MkDocs Material into `dest`"
    root = project_root(root)
    os.chdir(root)
    from nbdev.config import get_config
    cfg = get_config(root)
    nbs, build = Path(cfg.nbs_path), root/'build'
    cache, docs = build/'docs_cache', build/'docs_md'
    dest = Path(dest) if Path(dest).is_absolute() else root/dest
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    files = doc_notebooks(nbs)
    if not files: raise FileNotFoundError(f'no notebooks in {nbs}')
    page_of = {f.name: page_name(f, nbs) for f in files}
    jobs = [(str(f), str(cache/f.relative_to(nbs)), _sha(*_inputs(root, f)), execute, keep_going) for f in files]
    start = time.time()
    say(f'Processing {len(files)} notebooks ({"executing" if execute else "committed outputs only"}, {workers} workers)')
    env_pp = os.environ.get('PYTHONPATH')
    os.environ['PYTHONPATH'] = os.pathsep.join([str(root)] + ([env_pp] if env_pp else []))  # workers import this checkout
    try:
        # a fresh process per notebook, as `nbdev_test` isolates them (IPython also replaces `__main__` in a worker)
        with cf.ProcessPoolExecutor(max(1, workers), mp_context=mp.get_context('spawn'), max_tasks_per_child=1) as ex:
            futs, errors = {ex.submit(_work, j): j for j in jobs}, []
            for fut in cf.as_completed(futs):
                try: nb, status, secs, note = fut.result()
                except Exception as e:  # report every failing notebook, not just the first
                    errors.append(str(e)); say(f'  {Path(futs[fut][0]).name:<28} FAILED'); continue
                say(f'  {Path(nb).name:<28} {status:<9} {secs:6.1f}s' + (f'  ({note.splitlines()[0][:120]})' if note else ''))
        if errors: raise RuntimeError(f'{len(errors)} notebook(s) failed (--keep-going renders them anyway):\n\n' + '\n\n'.join(errors))
    finally:
        if env_pp is None: os.environ.pop('PYTHONPATH', None)
        else: os.environ['PYTHONPATH'] = env_pp

    shutil.rmtree(docs, ignore_errors=True)
    docs.mkdir(parents=True)
    links = DocLinks(cfg.doc_host + cfg.doc_baseurl, page_of)
    nav, pages, images = [], {}, {}
    for f in files:
        nb = json.loads((cache/f.relative_to(nbs)).read_text())
        page = page_of[f.name]
        pages[page], imgs = nb2md(nb, page, links=links)
        images.update({(Path(page).parent/name).as_posix(): data for name, data in imgs.items()})
        nav.append({('Home' if page == 'index.md' else nb_title(nb, f.stem)): page})
    for page, md in link_methods_to_classes(pages).items():
        (docs/page).parent.mkdir(parents=True, exist_ok=True)
        (docs/page).write_text(md.replace('](../docs/screenshots/', '](screenshots/'))  # see the screenshots copied below
    for name, data in images.items():
        (docs/name).parent.mkdir(parents=True, exist_ok=True)
        (docs/name).write_bytes(data)
    if 'index.md' not in page_of.values():  # no index.ipynb yet: a front page listing the others
        (docs/'index.md').write_text(f'# {cfg.title}\n\n{cfg.get("description", "")}\n\n' +
                                     ''.join(f'- [{list(n)[0]}]({list(n.values())[0]})\n' for n in nav))
        nav.insert(0, {'Home': 'index.md'})
    for f in nbs.rglob('*'):  # images and other assets the notebooks' markdown refers to
        if f.suffix.lower() in ('.png', '.jpg', '.jpeg', '.gif', '.svg', '.webp') and '_proc' not in f.parts:
            (docs/f.relative_to(nbs)).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, docs/f.relative_to(nbs))
    for f in sorted((root/'docs'/'screenshots').glob('*.png')):  # screenshots a notebook shows as ../docs/screenshots/NAME
        (docs/'screenshots').mkdir(exist_ok=True); shutil.copy2(f, docs/'screenshots'/f.name)
    (docs/'docs.css').write_text((root/'tools'/'docs.css').read_text())
    if (root/'CONTRIBUTING.md').is_file():  # the front page links to it, as the README does on GitHub
        (docs/'CONTRIBUTING.md').write_text((root/'CONTRIBUTING.md').read_text()); nav.append({'Contributing': 'CONTRIBUTING.md'})

    import yaml
    gen = build/'mkdocs.gen.yml'
    gen.write_text(yaml.safe_dump({'INHERIT': '../mkdocs.yml', 'docs_dir': 'docs_md', 'site_dir': str(dest), 'nav': nav},
                                  sort_keys=False))
    say(f'Rendering with MkDocs Material -> {dest}')
    # strict: a broken link or anchor fails the build (not with keep_going, whose failed pages lack their API entries)
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--clean', '-f', str(gen)] + ([] if keep_going else ['--strict']) +
                       (['-q'] if quiet else []), cwd=root, capture_output=True, text=True, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    if r.returncode: raise RuntimeError(f'mkdocs build failed:\n{r.stdout}\n{r.stderr}')
    say(f'Done in {time.time()-start:.0f}s: open {dest/"index.html"} (or `python -m http.server -d {dest.relative_to(root) if dest.is_relative_to(root) else dest}`)')
    return dest

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dest', default='_site', help='folder the site is written to (default: _site)')
    ap.add_argument('--no-exec', action='store_true', help="don't run the notebooks; show their committed outputs only")
    ap.add_argument('--workers', type=int, default=2, help='notebooks executed at once (default: 2)')
    ap.add_argument('--keep-going', action='store_true', help='render a failing notebook without outputs instead of stopping')
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import build_docs as bd  # workers must find `_work` in an importable module, not in `__main__`
    try: bd.build_docs(a.dest, execute=not a.no_exec, workers=a.workers, keep_going=a.keep_going)
    except (RuntimeError, FileNotFoundError) as e: sys.exit(f'build_docs: {e}')

if __name__ == '__main__': main()
