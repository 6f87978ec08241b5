"""Write README.md from nbs/index.ipynb without Quarto: `python tools/build_readme.py` (`--check` only compares).

`nbdev_readme` needs Quarto; this produces the README from the same notebook with nbdev's own processors:
the title and description from the notebook's first cell, `#| hide` and `#| export` cells left out, directives
stripped, backticked symbols linked to the hosted API docs, and code cells followed by their committed outputs.
The notebook is not executed, so the README is exactly what is committed in the notebook and a test can compare them.
"""
from __future__ import annotations
import argparse, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from build_docs import DocLinks, doc_notebooks, nb2md, page_name, project_root

def readme(root:str|Path|None=None,  # Repository root (default: the one holding this script)
          )->tuple[str, dict[str, bytes]]:
    "README.md's text generated from `index.ipynb`, and the image files it refers to (paths relative to the root)"
    from fastcore.nbio import read_nb
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    from nbdev import processors as P
    root = project_root(root)
    cfg = get_config(root)
    nbs = Path(cfg.nbs_path)
    src = nbs/cfg.get('readme_nb', 'index.ipynb')
    if not src.exists(): raise FileNotFoundError(f'{src} not found: the README is generated from it')
    nb = read_nb(src)
    nb.path_ = str(src)
    procs = [FrontmatterProc, P.populate_language, P.insert_warning, P.strip_ansi, P.hide_line, P.rm_header_dash,
             P.rm_export, P.clean_magics, P.hide_, P.add_links, P.strip_hidden_metadata]  # `FilterDefaults` less execution
    with working_directory(root): NBProcessor(nb=nb, procs=procs, rm_directives='quarto').process()
    page_of = {f.name: page_name(f, nbs) for f in doc_notebooks(nbs)}
    md, images = nb2md(nb, 'index.md', flavor='gfm', links=DocLinks(cfg.doc_host + cfg.doc_baseurl, page_of, nbs=f'{nbs.relative_to(root)}/'))
    return md, images

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--check', action='store_true', help='exit with status 1 if README.md differs from what index.ipynb gives')
    a = ap.parse_args(argv)
    root = project_root()
    try: md, images = readme(root)
    except FileNotFoundError as e: sys.exit(f'build_readme: {e}')
    cur = (root/'README.md').read_text() if (root/'README.md').exists() else ''
    if a.check:
        if cur != md: sys.exit('build_readme: README.md is out of date with nbs/index.ipynb; run `python tools/build_readme.py`')
        return print('README.md is in sync with nbs/index.ipynb')
    (root/'README.md').write_text(md)
    for name, data in images.items(): (root/name).parent.mkdir(parents=True, exist_ok=True); (root/name).write_bytes(data)
    print(f'wrote README.md' + (f' and {len(images)} images in index_files/' if images else ''))

if __name__ == '__main__': main()
