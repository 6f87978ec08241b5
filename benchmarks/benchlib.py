"""What every benchmark script shares: the machine it ran on, and one results dict written as JSON and as markdown.

A result is a dict with a few keys every script fills, plus whatever raw figures it keeps:

    title      one line
    intro      what was measured and how (a paragraph of markdown)
    reproduce  the command that measures it again
    machine    machine_info(): CPU model, SIMD flags, cores, threads, platform, load average
    settings   the knobs of the run (tokens, threads, rounds, ...)
    tables     [{'title', 'columns': [{'key', 'label', 'fmt', 'chart'}], 'rows': [{key: value}], 'note'}]
    notes      a list of remarks shown under the tables

`write_result('chat', res)` writes `results/chat.json` and `results/chat.md`, the markdown made from the JSON, so the two
never disagree; the docs page (nbs/90_benchmarks.ipynb) reads the JSON. `python benchmarks/benchlib.py results/chat.json`
rewrites the markdown of a result without measuring anything.
"""
import json, os, platform, sys
from pathlib import Path
from convchat.core import CPUInfo, cpu_info

RESULTS = Path(__file__).parent/'results'

def machine_info(threads:int|None=None)->dict:
    "A result's `machine`: `convchat.core.cpu_info` (CPU model, SIMD flags, cores, threads), the platform and the 1-minute load average"
    out = dict(cpu_info(threads), platform=platform.platform(), load_avg=round(os.getloadavg()[0], 2))
    if 'cpuidmask' in os.environ.get('LD_PRELOAD', ''):   # int8_study.mask_lib: the kernels an AVX2-only CPU gets
        out['flags'] = [f for f in out['flags'] if not f.startswith(('avx512', 'amx', 'avx_vnni'))]
        out['note'] = 'AVX-512, AMX and AVX-VNNI hidden from ONNX Runtime and torch by the CPUID mask of benchmarks/int8_study.py'
    return out

def column(key:str, label:str, fmt:str='{}', chart:bool=False)->dict:
    "A table column: the row key, its header, a format for its values, and whether the docs page charts it"
    return dict(key=key, label=label, fmt=fmt, chart=chart)

def cell(v, fmt:str='{}')->str:
    "A value as the table shows it: blank for None, text as is, numbers through `fmt`"
    if v is None: return ''
    if isinstance(v, bool): return 'yes' if v else 'no'
    return v if isinstance(v, str) else fmt.format(v)

def machine_line(m:dict)->str:
    "One sentence naming the machine a result was measured on"
    if not m: return ''
    s = f"Machine: {CPUInfo(m)}"
    if m.get('load_avg') is not None: s += f", 1-minute load average {m['load_avg']}"
    return s + (f" ({m['note']})" if m.get('note') else '') + '.'

def table_md(t:dict)->str:
    "A pipe table from a table dict"
    cols = t['columns']
    num = [any(isinstance(r.get(c['key']), (int, float)) and not isinstance(r.get(c['key']), bool) for r in t['rows']) for c in cols]
    L = ['| ' + ' | '.join(c['label'] for c in cols) + ' |', '|' + '|'.join('---:' if n else '---' for n in num) + '|']
    L += ['| ' + ' | '.join(cell(r.get(c['key']), c.get('fmt', '{}')) for c in cols) + ' |' for r in t['rows']]
    return '\n'.join(L)

def to_markdown(res:dict)->str:
    "The markdown of a result: title, intro, machine, reproduce command, tables, notes"
    L = [f"# {res['title']}", '']
    head = ' '.join(s for s in [res.get('intro', ''), machine_line(res.get('machine', {})),
                                f"Reproduce: `{res['reproduce']}`." if res.get('reproduce') else ''] if s)
    if head: L += [head, '']
    for t in res.get('tables', []):
        if t.get('title'): L += [f"## {t['title']}", '']
        L += [table_md(t), '']
        if t.get('note'): L += [t['note'], '']
    L += [f'- {n}' for n in res.get('notes', [])]
    return '\n'.join(L).rstrip() + '\n'

def write_result(name:str, res:dict, results:Path=RESULTS)->Path:
    "Write `res` to `results/<name>.json` and its markdown to `results/<name>.md`; return the markdown's path"
    results = Path(results); results.mkdir(parents=True, exist_ok=True)
    for t in res.get('tables', []):                      # a row that lacks a column (a run that failed) shows a blank cell
        for r in t['rows']:
            for c in t['columns']: r.setdefault(c['key'], None)
    (results/f'{name}.json').write_text(json.dumps(res, indent=1, ensure_ascii=False, default=str) + '\n')
    md = results/f'{name}.md'
    md.write_text(to_markdown(res))
    return md

if __name__ == '__main__':
    for f in sys.argv[1:]:
        f = Path(f); print(write_result(f.stem, json.loads(f.read_text()), f.parent))
