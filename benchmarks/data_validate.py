"""Validate a large generated JSONL file and measure time and peak memory (the data layer streams JSON lines).

    python benchmarks/data_validate.py [--size-mb 100] [--path /tmp/convchat-100mb.jsonl] [--compare-load]

The file is generated once (streamed, with a few bad records mixed in) and is not kept in the repository.
Each measurement runs in a fresh process so its peak RSS (`ru_maxrss`) is its own; the baseline is the RSS of the
same process after imports. Results go to `benchmarks/results/data_validate.json`.
"""
import argparse, json, os, random, resource, subprocess, sys, time
from pathlib import Path
from benchlib import machine_info, column, write_result

def generate(path:Path, size_mb:float, seed:int=0):
    "Write about `size_mb` MB of OpenAI-style JSON lines, one bad record in every 10,000."
    rng, target, n = random.Random(seed), int(size_mb*1e6), 0
    words = "bread loaf oven starter flour crumb kettle honey sesame morning bakery cake order open close".split()
    say = lambda k: ' '.join(rng.choice(words) for _ in range(k)).capitalize() + '.'
    with open(path, 'w', encoding='utf-8') as f:
        while f.tell() < target:
            msgs = []
            for _ in range(rng.randint(1, 4)):
                msgs += [{'role': 'user', 'content': say(rng.randint(5, 30))}, {'role': 'assistant', 'content': say(rng.randint(10, 80))}]
            if n % 10_000 == 9_999: msgs[0]['role'] = 'bot'
            f.write(json.dumps({'messages': msgs}) + '\n'); n += 1
    return n

def measure(path:str, what:str)->dict:
    "Run in a child process: baseline RSS after imports, then validate (or load) and report peak RSS and time."
    from convchat.data import validate_file, load_conversations
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if what == 'validate':
        rep = validate_file(path)
        n, errs = rep.n_conversations, rep.n_errors
    else:
        convs = load_conversations(path, skip_invalid=True)
        n, errs = len(convs), None
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(what=what, seconds=round(dt, 2), conversations=n, errors=errs, baseline_rss_mb=round(base, 1),
                peak_rss_mb=round(peak, 1), peak_minus_baseline_mb=round(peak - base, 1))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--size-mb', type=float, default=100)
    ap.add_argument('--path', default='/tmp/convchat-100mb.jsonl')
    ap.add_argument('--compare-load', action='store_true', help='also measure load_conversations (keeps everything in memory)')
    ap.add_argument('--child', choices=['validate', 'load'])
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'data_validate.json'))
    a = ap.parse_args()
    if a.child:
        import warnings; warnings.simplefilter('ignore')
        print(json.dumps(measure(a.path, a.child))); return
    p = Path(a.path)
    if not p.exists() or abs(p.stat().st_size/1e6 - a.size_mb) > 1:
        t0 = time.time(); n = generate(p, a.size_mb); print(f"generated {p}: {n} conversations in {time.time()-t0:.1f}s", file=sys.stderr)
    size = round(p.stat().st_size/1e6, 1)
    runs = []
    for what in ['validate'] + (['load'] if a.compare_load else []):
        r = subprocess.run([sys.executable, __file__, '--child', what, '--path', str(p)], capture_output=True, text=True, check=True)
        res = dict(json.loads(r.stdout.strip().splitlines()[-1]), file_mb=size)
        res['mb_per_s'] = round(size/res['seconds'], 1)
        runs.append(res); print(json.dumps(res))
    import platform
    out = Path(a.out)
    res = dict(title='Validating a conversations file', reproduce=f'python benchmarks/data_validate.py --size-mb {a.size_mb:g}' + ' --compare-load'*a.compare_load,
               intro=('`convchat.data.validate_file` streaming a generated JSONL file of conversations (with a few deliberately bad records), '
                      'each run in a fresh process; peak memory is measured over the imports.'),
               machine=machine_info(1), python=platform.python_version(), runs=runs,
               tables=[dict(columns=[column('what', 'run'), column('file_mb', 'file (MB)', '{:.0f}'), column('conversations', 'conversations', '{:,}'),
                                     column('errors', 'errors'), column('seconds', 'seconds', '{:.2f}'), column('mb_per_s', 'MB/s', '{:.1f}', True),
                                     column('peak_rss_mb', 'peak RSS (MB)', '{:.1f}', True)], rows=runs)])
    print(write_result(out.stem, res, out.parent).read_text())

if __name__ == '__main__': main()
