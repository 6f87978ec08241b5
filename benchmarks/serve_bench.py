"""`convchat serve` under load on loopback: aggregate tokens/s, time to first token and latency (p50/p95) for 1 to 16 concurrent
streamed clients using the official `openai` client, for this checkout's server and the previous server design, in one run.

    python benchmarks/serve_bench.py [--quick] [--clients 1 2 4 8 16] [--requests-per-client 2] [--max-tokens 64]
                                     [--designs previous current] [--model DIR]
    python benchmarks/serve_bench.py --steps [--rows 1 2 4 8 16] [--rounds 5]     # the decode step alone, by batch size

Model: what `convchat convert` writes by default for the default model (SmolLM2-135M-Instruct, fused 8-bit graph), cached
under the convchat cache folder; `--quick` uses a tiny random Llama-style model instead (measures the server itself).
Designs, each a server in its own process (`convchat.serve.run_server` from that code, ONNX Runtime's default threads):
`previous` is the server of commit 20642a0 (one decode loop per request, 2 running at once, the rest queued), extracted with
`git archive` and put first on PYTHONPATH; `current` is this checkout's server. Every client sends its requests back to back
(greedy, `max_tokens` each, streamed with usage); a row ends when all are answered. Each reply is compared with the reply the
same design gave that question with one client: greedy replies must not depend on the load. Results go to
`benchmarks/results/serve.md` and `serve.json` (run under `flock /tmp/convchat-bench.lock`).

`--steps` times what caps the batching: one decode step of a `Batch` of 1 to 16 rows (the same questions, greedy), for the
runtime of commit `BEFORE_STEPS` (imported from a `git archive` as a second package), this checkout's, and this checkout's with
ONNX Runtime's intra-op spinning off, interleaved in one process, several rounds, median; wall and process CPU milliseconds per
step. `8 x step(1) / step(8)` bounds what 8 clients can get over one. A second table times what each request adds: joining one
prompt to a batch, prefilled whole or past the beginning it shares with a cached prompt (the system prompt). Results go to
`results/serve_steps.*` (with `LD_PRELOAD=/tmp/avx2/cpuidmask.so`: `--name serve_steps_avx2`).
"""
import argparse, ast, json, os, platform, subprocess, sys, tempfile, threading, time
from pathlib import Path
from benchlib import machine_info, column, write_result

ROOT, RESULTS = Path(__file__).resolve().parent.parent, Path(__file__).parent/'results'
sys.path.insert(0, str(ROOT))   # the in-process tables run this checkout's convchat, whatever is installed
PREVIOUS = '20642a0'
BEFORE_STEPS = 'f02a0b6'   # main before the shared KV buffer and the greedy shortcut
QUESTIONS = ["What time does the bakery open on Saturdays?", "Can I order a birthday cake for Friday?",
             "Do you have gluten-free bread?", "How long does sourdough keep?", "Is there parking nearby?",
             "What is in the seeded loaf?", "Do you deliver?", "Can I pay by card?"]
DESIGNS = dict(previous=f"previous server ({PREVIOUS}: a decode loop per request, 2 at once)",
               current="this checkout's server (continuous batching, prompt beginnings cached)")
SERVER_ARGS = dict(previous=dict(max_queue=64), current=dict(max_queue=64, max_batch=16, max_concurrency=16))

def model_folder(quick:bool, work:Path)->Path:
    "The folder `convchat convert` writes for the default model (cached), or a tiny random model's export with `quick`."
    from convchat.core import cache_dir
    from convchat.convert import export
    if quick:
        from convchat.models import save_tiny_model
        return Path(export(save_tiny_model(work/'tiny-hf', 'llama'), work/'tiny-onnx', graph='plain', bits=None, verify=False,
                           progress=False))
    dest = cache_dir()/'bench'/'default-convert'
    if (dest/'convchat-onnx.json').exists(): return dest
    return Path(export('default', dest, progress=False, overwrite=True))

def previous_code(work:Path)->Path:
    "The `convchat` package of commit `PREVIOUS`, extracted into `work`."
    dest = work/'previous'; dest.mkdir()
    tar = subprocess.run(['git', '-C', str(ROOT), 'archive', PREVIOUS, 'convchat'], capture_output=True, check=True).stdout
    subprocess.run(['tar', '-x', '-C', str(dest)], input=tar, check=True)
    return dest

def git_describe(path:Path)->str:
    "The commit of the checkout at `path` (with '+changes' when its work tree differs)."
    rev = subprocess.run(['git', '-C', str(path), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', str(path), 'status', '--porcelain', '--', 'convchat'], capture_output=True,
                           text=True).stdout.strip()
    return rev + ('+changes' if dirty else '')

def free_port()->int:
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def start_server(code_path:Path, model_dir:Path, port:int, kwargs:dict, log:Path):
    "`run_server` of the package at `code_path` in a child process, given those of `kwargs` its signature takes; wait until it answers."
    from openai import OpenAI
    code = (f"import inspect, convchat.serve as S; kw = {kwargs!r}; "
            "ps = set(inspect.signature(S.run_server).parameters) | set(inspect.signature(S.make_app).parameters); "
            "kw = {k: v for k, v in kw.items() if k in ps}; print('server args:', kw, flush=True); "
            f"S.run_server({str(model_dir)!r}, port={port}, log_level='warning', **kw)")
    env = dict(os.environ, PYTHONPATH=str(code_path))
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=log.open('w'), stderr=subprocess.STDOUT, env=env, cwd=code_path)
    client = OpenAI(base_url=f'http://127.0.0.1:{port}/v1', api_key='none', max_retries=0, timeout=300)
    for _ in range(600):
        if proc.poll() is not None: raise RuntimeError(f"server from {code_path} ended: {log.read_text()[-2000:]}")
        try: return proc, client, client.models.list().data[0].id
        except Exception: time.sleep(0.2)
    proc.kill(); raise RuntimeError(f"server from {code_path} did not answer in 120 s")

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs)-1, max(0, round(q/100*(len(xs)-1))))] if xs else None

def ask(client, model_id:str, q:str, max_tokens:int)->dict:
    "One streamed greedy request: its text, completion tokens, time to first token and latency."
    t0, first, n, text = time.perf_counter(), None, 0, []
    for c in client.chat.completions.create(model=model_id, messages=[{'role': 'user', 'content': q}], max_tokens=max_tokens,
                                            temperature=0, stream=True, stream_options={'include_usage': True}):
        if c.choices and c.choices[0].delta.content:
            if first is None: first = time.perf_counter()-t0
            text.append(c.choices[0].delta.content)
        if c.usage: n = c.usage.completion_tokens
    return dict(q=q, text=''.join(text), tokens=n, ttft=first, latency=time.perf_counter()-t0)

def load(client, model_id:str, clients:int, per_client:int, max_tokens:int)->dict:
    "`clients` threads each send `per_client` requests back to back: the answers, errors and wall time of one round."
    out, errors, lock = [], [], threading.Lock()
    def worker(k):
        for i in range(per_client):
            try: r = ask(client, model_id, QUESTIONS[(k*per_client + i) % len(QUESTIONS)], max_tokens)
            except Exception as e:
                with lock: errors.append(repr(e)[:200]); continue
            with lock: out.append(r)
    t0 = time.perf_counter()
    ths = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in ths: t.start()
    for t in ths: t.join()
    wall = time.perf_counter()-t0
    return dict(answers=out, errors=errors, seconds=wall, tokens_per_s=sum(r['tokens'] for r in out)/wall)

def summary(clients:int, rounds:list, one:list|None)->tuple[dict, list]:
    "A row from the rounds of one client count: median tokens/s, and the median over rounds of its ratio to the one-client round."
    import statistics
    out = [r for x in rounds for r in x['answers']]; errors = [e for x in rounds for e in x['errors']]
    ttft, lat = [r['ttft'] for r in out if r['ttft'] is not None], [r['latency'] for r in out]
    r3 = lambda x: None if x is None else round(x, 3)
    return dict(clients=clients, requests=len(out), errors=len(errors), error_samples=errors[:3], rounds=len(rounds),
                seconds=round(sum(x['seconds'] for x in rounds), 2), tokens=sum(r['tokens'] for r in out),
                tokens_per_s=round(statistics.median(x['tokens_per_s'] for x in rounds), 1),
                x_one_client=round(statistics.median(x['tokens_per_s']/o['tokens_per_s'] for x, o in zip(rounds, one)), 2) if one else None,
                ttft_p50_s=r3(pct(ttft, 50)), ttft_p95_s=r3(pct(ttft, 95)),
                latency_p50_s=r3(pct(lat, 50)), latency_p95_s=r3(pct(lat, 95))), out

def bench_design(design:str, code_path:Path, model_dir:Path, a, work:Path)->list:
    "Rows for one server design: one per client count (the counts interleaved over `a.rounds` rounds), with the speed-up over one client."
    port, log = free_port(), work/f'{design}.log'
    proc, client, model_id = start_server(code_path, model_dir, port, SERVER_ARGS[design], log)
    got, alone = {c: [] for c in a.clients}, {}
    try:
        ask(client, model_id, 'hi', 4)                                                           # warm up
        for q in QUESTIONS: alone[q] = ask(client, model_id, q, a.max_tokens)['text']            # each question alone
        for k in range(a.rounds):
            for c in a.clients:
                got[c].append(load(client, model_id, c, a.requests_per_client, a.max_tokens))
                print(f"[{design}] round {k+1}, {c} clients: {got[c][-1]['tokens_per_s']:.1f} tokens/s, "
                      f"load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    finally:
        proc.send_signal(2)
        try: proc.wait(60)
        except subprocess.TimeoutExpired: proc.kill()
    rows = []
    for c in a.clients:
        r, answers = summary(c, got[c], got.get(1))
        r.update(design=design, label=f"{design}, {c} client{'s' if c > 1 else ''}",
                 same_as_alone=round(sum(x['text'] == alone[x['q']] for x in answers)/max(1, len(answers)), 3))
        rows.append(r)
        print(f"[{design}] {c} clients: {r['tokens_per_s']} tokens/s, x one client {r['x_one_client']}, TTFT p50 {r['ttft_p50_s']} s, "
              f"latency p95 {r['latency_p95_s']} s, same as alone {r['same_as_alone']}, errors {r['errors']}", file=sys.stderr)
    return rows, next((l for l in log.read_text().splitlines() if l.startswith('server args:')), '')

def engine_rows(model_dir:Path, a)->list:
    "The same load on this checkout's `Scheduler` in-process (no HTTP): the ceiling the server's batching can reach."
    from convchat.runtime import ChatModel, GenerationConfig
    from convchat.scheduler import Scheduler, Request
    m, c, rows = ChatModel(model_dir, threads=a.threads), GenerationConfig(max_new_tokens=a.max_tokens, temperature=0), []
    with Scheduler(m, max_batch=max(a.clients), max_waiting=max(a.clients)*a.requests_per_client) as s:
        s.submit(Request(m.encode('hi'), c.replace(max_new_tokens=4))).result()                   # warm up
        for n in a.clients:
            def client(k, out):
                for i in range(a.requests_per_client):
                    q = QUESTIONS[(k*a.requests_per_client + i) % len(QUESTIONS)]
                    out.append(s.submit(Request(m.encode([{'role': 'user', 'content': q}]), c)).result().completion_tokens)
            steps0, rows0, out, t0 = s.steps, s.stats['batch_rows_sum'], [], time.perf_counter()
            ths = [threading.Thread(target=client, args=(k, out)) for k in range(n)]
            for t in ths: t.start()
            for t in ths: t.join()
            wall = time.perf_counter()-t0
            mean = (s.stats['batch_rows_sum']-rows0)/max(1, s.steps-steps0)
            rows.append(dict(label=f"in-process, {n} client{'s' if n > 1 else ''}", clients=n, requests=len(out),
                             tokens_per_s=round(sum(out)/wall, 1), mean_batch=round(mean, 2)))
            print(f"[in-process] {n} clients: {rows[-1]['tokens_per_s']} tokens/s, mean batch {rows[-1]['mean_batch']}", file=sys.stderr)
    for r in rows: r['x_one_client'] = round(r['tokens_per_s']/rows[0]['tokens_per_s'], 2)
    return rows

ENGINE_COLUMNS = [column('label', 'scheduler, clients'), column('requests', 'requests'), column('tokens_per_s', 'tokens/s', '{:.1f}'),
                  column('x_one_client', 'x one client', '{:.2f}'), column('mean_batch', 'mean rows per step', '{:.2f}')]

COLUMNS = [column('label', 'server, clients'), column('requests', 'requests'), column('tokens_per_s', 'tokens/s', '{:.1f}', True),
           column('x_one_client', 'x one client', '{:.2f}', True), column('ttft_p50_s', 'p50 TTFT (s)', '{:.3f}'),
           column('ttft_p95_s', 'p95 TTFT (s)', '{:.3f}'), column('latency_p50_s', 'p50 latency (s)', '{:.3f}'),
           column('latency_p95_s', 'p95 latency (s)', '{:.3f}'), column('same_as_alone', 'same as alone', '{:.0%}'),
           column('errors', 'errors')]

def write(results:dict, name:str='serve')->Path:
    "Add the title, intro, table and notes to `results` and write serve.json and serve.md."
    a, rows = dict(dict(rounds=1), **results['settings']), results['rows']
    best = {d: next((r['x_one_client'] for r in rows if r['design'] == d and r['clients'] == 8), None) for d in a['designs']}
    results.update(title='Serving many clients at once', reproduce='flock /tmp/convchat-bench.lock python benchmarks/serve_bench.py',
        intro=(f"`convchat serve` on loopback with {a['model']}: 1 to {max(a['clients'])} concurrent clients (the `openai` client, "
               f"streamed), each sending {a['requests_per_client']} greedy requests of {a['max_tokens']} tokens at most back to back. "
               "tokens/s is every reply's tokens over the load's wall time; *x one client* is its ratio to the one-client load of the "
               "same server; *same as alone* is the share of replies identical to that question's reply with one client. "
               f"The client counts ran one after another, {a['rounds']} round{'s' if a['rounds'] > 1 else ''} in turn: tokens/s is the "
               "median over rounds, *x one client* the median of each round's ratio. "
               + ("Both servers ran in the same run, one after the other; compare rows within one run." if len(a['designs']) > 1 else
                  "Only this checkout's server ran.")),
        tables=[dict(columns=COLUMNS, rows=rows)] + ([dict(title='The scheduler in-process, without HTTP', columns=ENGINE_COLUMNS,
                                                           rows=results['engine'])] if results.get('engine') else []),
        notes=[f"{DESIGNS[d]}{' at ' + a['current_code'] if d == 'current' else ''}: server arguments "
               f"{', '.join(f'{k}={v}' for k, v in results['server_args'][d].items())}." for d in a['designs']] +
              ([f"With 8 clients: {', '.join(f'{d} {x}x' for d, x in best.items() if x)} one client's tokens/s."]
               if any(best.values()) else []))
    return write_result(name, results)

def runtime_of(rev:str, work:Path):
    "The `convchat.runtime` module of commit `rev`, imported as package `convchat_<rev>` beside this checkout's."
    import importlib
    dest = work/f'steps-{rev}'; dest.mkdir()
    tar = subprocess.run(['git', '-C', str(ROOT), 'archive', rev, 'convchat'], capture_output=True, check=True).stdout
    subprocess.run(['tar', '-x', '-C', str(dest)], input=tar, check=True)
    (dest/'convchat').rename(dest/f'convchat_{rev}')
    sys.path.insert(0, str(dest))
    return importlib.import_module(f'convchat_{rev}.runtime')

def time_steps(rt, model, B:int, warm:int, n:int)->tuple:
    "Wall and CPU ms per step of a `Batch` of `B` rows (greedy, the default options) after `warm` steps, and each row's tokens."
    b = rt.Batch(model.decoder)
    rows = [rt.Row(model.encode([{'role': 'user', 'content': QUESTIONS[i % len(QUESTIONS)]}]), rt.GenerationConfig(max_new_tokens=512))
            for i in range(B)]
    b.join(rows)
    for _ in range(warm): b.step()
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(n): b.step()
    wall, cpu = (time.perf_counter()-t)/n, (time.process_time()-cpu)/n
    return wall*1e3, cpu*1e3, {i: r.seen[len(r.prompt):] for i, r in enumerate(rows)}

def no_spinning(model, threads:int=None):
    "`model` with its ONNX Runtime session made again with intra-op spinning off (`session.intra_op.allow_spinning` 0)."
    import onnxruntime as ort
    from convchat.runtime import _session_options
    so = _session_options(threads); so.add_session_config_entry('session.intra_op.allow_spinning', '0')
    model.decoder.session = ort.InferenceSession(str(model.decoder.onnx_file), sess_options=so, providers=['CPUExecutionProvider'])
    return model

def step_rows(model_dir:Path, a, work:Path)->dict:
    "Per-step cost by batch size, commit `BEFORE_STEPS`'s runtime, this checkout's, and with spinning off interleaved, median of `a.rounds`."
    import numpy as np
    from convchat import runtime as now
    here = f'now ({git_describe(ROOT)})'
    designs = {f'before ({BEFORE_STEPS})': runtime_of(BEFORE_STEPS, work), here: now, f'{here}, spinning off': now}
    models = {k: rt.ChatModel(model_dir, threads=a.threads) for k, rt in designs.items()}
    no_spinning(models[f'{here}, spinning off'], a.threads)
    got, same = {}, True
    for r in range(a.rounds):
        for B in a.rows:
            toks = []
            for k, rt in designs.items():
                w, c, t = time_steps(rt, models[k], B, a.warm, a.steps_timed)
                got.setdefault((k, B), []).append((w, c)); toks.append(t)
            same &= all(t == toks[0] for t in toks)
        print(f"round {r+1}/{a.rounds} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = []
    for k in designs:
        one = np.median([w for w, _ in got[(k, a.rows[0])]])
        for B in a.rows:
            w, c = np.median([x[0] for x in got[(k, B)]]), np.median([x[1] for x in got[(k, B)]])
            rows.append(dict(label=f"{k}, {B} row{'s' if B > 1 else ''}", design=k, rows=B, ms_per_step=round(w, 2),
                             cpu_ms_per_step=round(c, 2), x_one_row=round(w/one, 2), tokens_per_s=round(B/w*1e3, 1),
                             bound_x_one=round(B*one/w, 2)))
    return dict(rows=rows, same_tokens=same, joins=join_rows(models[here], now, a))

def join_rows(m, rt, a)->list:
    "Milliseconds to join one prompt to a batch: prefilled whole, or past the beginning it shares with another question's cached prompt."
    import numpy as np
    ps, got = [m.encode([{'role': 'user', 'content': q}]) for q in QUESTIONS], {}
    for _ in range(a.rounds):
        for i, p in enumerate(ps):
            for k in ('whole prompt', 'past a cached beginning'):
                c = rt.PrefixCache() if k != 'whole prompt' else None
                if c: rt.Batch(m.decoder, prefix_cache=c).join([rt.Row(ps[i-1])])            # another question's prompt, cached
                b, t = rt.Batch(m.decoder, prefix_cache=c), time.perf_counter()
                b.join([rt.Row(p)])
                got.setdefault(k, []).append(((time.perf_counter()-t)*1e3, len(p) - (c.tokens_saved if c else 0), len(p)))
    whole = np.median([x[0] for x in got['whole prompt']])
    return [dict(label=k, ms_per_join=round(float(np.median([x[0] for x in v])), 2), tokens_run=round(float(np.mean([x[1] for x in v])), 1),
                 prompt_tokens=round(float(np.mean([x[2] for x in v])), 1),
                 x_whole=round(float(np.median([x[0] for x in v]))/whole, 2)) for k, v in got.items()]

STEP_COLUMNS = [column('label', 'runtime, rows'), column('ms_per_step', 'ms per step', '{:.2f}', True),
                column('cpu_ms_per_step', 'CPU ms per step', '{:.2f}'), column('x_one_row', 'x one row\'s step', '{:.2f}'),
                column('tokens_per_s', 'tokens/s', '{:.1f}'), column('bound_x_one', 'B x step(1) / step(B)', '{:.2f}', True)]

JOIN_COLUMNS = [column('label', 'joining one prompt'), column('prompt_tokens', 'prompt tokens', '{:.1f}'),
                column('tokens_run', 'tokens run', '{:.1f}'), column('ms_per_join', 'ms per join', '{:.2f}', True),
                column('x_whole', 'x whole prompt', '{:.2f}')]

def write_steps(res:dict, a, model:str, name:str)->Path:
    "serve_steps.json and .md: the step table with its intro."
    res.update(title='The batched decode step by batch size',
        reproduce='flock /tmp/convchat-bench.lock python benchmarks/serve_bench.py --steps',
        intro=(f"One decode step of a `Batch` of B rows of {model} (greedy, the default options, the serve benchmark's questions), "
               f"timed after {a.warm} steps over {a.steps_timed} steps, for the runtime before (commit {BEFORE_STEPS}), now, and now "
               "with ONNX Runtime's intra-op spinning off, interleaved in one process, median of "
               f"{a.rounds} rounds. *B x step(1) / step(B)* bounds the tokens/s that B clients can get over one client."),
        tables=[dict(columns=STEP_COLUMNS, rows=res['rows'])] + ([dict(
            title='What each request adds: joining its prompt to the batch', columns=JOIN_COLUMNS, rows=res['joins'],
            note=("One prompt (each of the questions in turn) joins an empty batch now: prefilled whole, or, with another "
                   "question's prompt in a `PrefixCache`, only past the beginning they share (the chat template's system prompt); "
                   f"median over {a.rounds} rounds and the questions."))] if res.get('joins') else []),
        notes=[f"Every row's greedy tokens equal in all runtimes: {'yes' if res['same_tokens'] else 'NO'}."])
    return write_result(name, res)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='a tiny random model instead of the default model')
    ap.add_argument('--model', type=Path, default=None, help='an exported folder to serve instead')
    ap.add_argument('--clients', type=int, nargs='+', default=[1, 2, 4, 8, 16])
    ap.add_argument('--requests-per-client', type=int, default=2)
    ap.add_argument('--max-tokens', type=int, default=64)
    ap.add_argument('--rounds', type=int, default=None,
                    help='rounds over the client counts, median tokens/s and ratio (default 1); '
                         'with --steps, over the batch sizes (default 5)')
    ap.add_argument('--designs', nargs='+', choices=list(DESIGNS), default=list(DESIGNS))
    ap.add_argument('--current-code', type=Path, default=ROOT,
                    help="the checkout whose server is 'current' (default: this one; the in-process table uses this process's convchat)")
    ap.add_argument('--threads', type=int, default=None, help="ONNX Runtime threads of this checkout's server (default: its own)")
    ap.add_argument('--name', default='serve', help='results/<name>.json and .md')
    ap.add_argument('--no-engine', action='store_true', help="skip the in-process scheduler table")
    ap.add_argument('--steps', action='store_true', help='time the decode step by batch size instead (results/serve_steps.*)')
    ap.add_argument('--rows', type=int, nargs='+', default=[1, 2, 4, 8, 16], help='batch sizes of --steps')
    ap.add_argument('--warm', type=int, default=8, help='steps before timing (--steps)')
    ap.add_argument('--steps-timed', type=int, default=24, help='steps timed per batch (--steps)')
    a = ap.parse_args()
    a.rounds = a.rounds or (5 if a.steps else 1)
    import onnxruntime, openai
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = a.model or model_folder(a.quick, tmp)
        if a.steps:
            load0, res = os.getloadavg()[0], step_rows(model_dir, a, tmp)
            res.update(settings=dict(rows=a.rows, rounds=a.rounds, warm=a.warm, steps=a.steps_timed, threads=a.threads),
                       machine=dict(machine_info(a.threads), load_avg=round(os.getloadavg()[0], 2),
                                    note=f'shared; load {load0:.2f} at the start',
                                    versions=dict(onnxruntime=onnxruntime.__version__)))
            print(write_steps(res, a, f"`{model_dir.name}`", a.name if a.name != 'serve' else 'serve_steps').read_text())
            return
        paths = dict(previous=previous_code(tmp) if 'previous' in a.designs else None, current=a.current_code.resolve())
        meta = json.loads((model_dir/'convchat-onnx.json').read_text())
        label = ('a tiny random model' if a.quick and not a.model else
                 f"`{model_dir.name}` ({meta.get('graph')} graph, {meta.get('bits')} bits)")
        results = dict(settings=dict(clients=a.clients, requests_per_client=a.requests_per_client, max_tokens=a.max_tokens, rounds=a.rounds,
                                     designs=a.designs, model=label, current_code=git_describe(a.current_code),
                                     threads=a.threads),
                       machine=dict(machine_info(), versions=dict(python=platform.python_version(), onnxruntime=onnxruntime.__version__,
                                                              openai=openai.__version__)),
                       rows=[], server_args={})
        load0 = os.getloadavg()[0]
        for d in a.designs:
            if d == 'current' and a.threads: SERVER_ARGS[d]['threads'] = a.threads
            rows, args = bench_design(d, paths[d], model_dir, a, tmp)
            results['rows'] += rows
            results['server_args'][d] = ast.literal_eval(args.split('server args:', 1)[1]) if args else {}
        if 'current' in a.designs and not a.no_engine: results['engine'] = engine_rows(model_dir, a)
        results['machine'].update(load_avg=round(os.getloadavg()[0], 2), note=f'shared; load {load0:.2f} at the start')
    print(write(results, a.name).read_text())

if __name__ == '__main__': main()
