"""`convchat serve` on loopback: requests per second, latency (p50/p95) and time to first token under a fixed number of concurrent clients, talking to the server with the official `openai` client.

    python benchmarks/serve_bench.py [--quick] [--models tiny default fused-int8] [--clients 1 4] [--requests 16] [--max-seconds 30]

The server runs in its own process (`convchat.serve.run_server`, 2 running generations, its default ONNX Runtime threads) and the
clients in this one, each a thread that sends greedy requests back to back until the request count or the time bound is
reached. The same prompts are answered first by `ChatModel.generate` in this process, so the HTTP overhead can be read off
the one-client latency. Models: a tiny random Llama-style model (measures the server itself) and, unless `--quick`, the
embedded default model SmolLM2-135M-Instruct as its plain fp32 Optimum export (`convert.export(graph='plain', bits=None)`)
and as a fused 8-bit graph (`convchat.fuse.build_fused(bits=8)`, onnxruntime-genai's builder; `fused-fp32` and `fused-int4`
can be asked for too), both cached under the convchat cache folder and run by convchat's runtime. Results go to
`benchmarks/results/serve.md` and `serve.json`.
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path
from benchlib import cpu_info, column, write_result

RESULTS = Path(__file__).parent/'results'
QUESTIONS = ["What time does the bakery open on Saturdays?", "Can I order a birthday cake for Friday?",
             "Do you have gluten-free bread?", "How long does sourdough keep?", "Is there parking nearby?",
             "What is in the seeded loaf?", "Do you deliver?", "Can I pay by card?"]

MODELS = ('tiny', 'default', 'fused-int8')
CHOICES = MODELS + ('fused-fp32', 'fused-int4')

def export_model(which:str, work:Path)->Path:
    "An exported folder for `which`: 'tiny', 'default' (plain fp32 Optimum export) or 'fused-int8'/'fused-fp32'/'fused-int4' (`convchat.fuse.build_fused`, not gated); the default model's are cached."
    from convchat.core import cache_dir
    from convchat.models import save_tiny_model
    from convchat.convert import export
    if which == 'tiny':
        return Path(export(save_tiny_model(work/'tiny-hf', 'llama'), work/'tiny-onnx', graph='plain', bits=None, verify=False, progress=False))
    if which.startswith('fused-'):
        from convchat.fuse import build_fused
        from convchat.models import default_model_path
        dest = cache_dir()/'bench'/f'default-{which}'
        if (dest/'convchat-onnx.json').exists(): return dest
        bits = {'fp32': None, 'int8': 8, 'int4': 4}[which.split('-', 1)[1]]
        return Path(build_fused(default_model_path(), dest, bits=bits, overwrite=True))
    dest = cache_dir()/'bench'/'default-onnx'
    if (dest/'convchat-onnx.json').exists(): return dest
    return Path(export('default', dest, graph='plain', bits=None, verify=False, overwrite=True))

def free_port()->int:
    from convchat.serve import listen_socket
    s = listen_socket('127.0.0.1', 0); p = s.getsockname()[1]; s.close()
    return p

def start_server(model_dir:Path, port:int, threads:int|None, concurrency:int):
    code = (f"from convchat.serve import run_server; run_server({str(model_dir)!r}, port={port}, threads={threads}, "
            f"max_concurrency={concurrency}, max_queue=64, log_level='warning')")
    proc = subprocess.Popen([sys.executable, '-c', code], stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if 'convchat serve:' not in line: raise RuntimeError(f"server did not start: {line}{proc.stderr.read()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()   # keep draining its log
    return proc

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs)-1, max(0, round(q/100*(len(xs)-1))))] if xs else float('nan')

def load(client, model_id:str, clients:int, n_requests:int, max_seconds:float, max_tokens:int, stream:bool)->dict:
    "`clients` threads send requests back to back; returns throughput and latency figures."
    lat, ttft, toks, errors, lock = [], [], [], [], threading.Lock()
    counter = iter(range(n_requests))
    t_end = time.perf_counter() + max_seconds
    def worker():
        while time.perf_counter() < t_end:
            with lock: i = next(counter, None)
            if i is None: return
            msgs = [{'role': 'user', 'content': QUESTIONS[i % len(QUESTIONS)]}]
            t0 = time.perf_counter()
            try:
                if stream:
                    first, n = None, 0
                    for c in client.chat.completions.create(model=model_id, messages=msgs, max_tokens=max_tokens, temperature=0,
                                                            stream=True, stream_options={'include_usage': True}):
                        if first is None and c.choices and c.choices[0].delta.content: first = time.perf_counter()-t0
                        if c.usage: n = c.usage.completion_tokens
                else:
                    r = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=max_tokens, temperature=0)
                    first, n = None, r.usage.completion_tokens
            except Exception as e:
                with lock: errors.append(repr(e)); continue
            dt = time.perf_counter()-t0
            with lock:
                lat.append(dt); toks.append(n)
                if first is not None: ttft.append(first)
    t0 = time.perf_counter()
    ths = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ths: t.start()
    for t in ths: t.join()
    wall = time.perf_counter()-t0
    return dict(clients=clients, stream=stream, requests=len(lat), errors=len(errors), error_samples=errors[:3], seconds=round(wall, 2),
                req_per_s=round(len(lat)/wall, 2), completion_tokens_per_s=round(sum(toks)/wall, 1),
                latency_p50_s=round(pct(lat, 50), 3), latency_p95_s=round(pct(lat, 95), 3),
                ttft_p50_s=round(pct(ttft, 50), 3) if ttft else None)

def bench_model(which:str, work:Path, a)->dict:
    from openai import OpenAI
    from convchat.runtime import ChatModel
    t0 = time.perf_counter()
    d = export_model(which, work)
    print(f"[{which}] model at {d} ({time.perf_counter()-t0:.0f} s)", file=sys.stderr)
    m = ChatModel(d, threads=a.threads)
    direct = []
    for q in QUESTIONS[:4]:
        t0 = time.perf_counter(); m.generate([{'role': 'user', 'content': q}], max_new_tokens=a.max_tokens); direct.append(time.perf_counter()-t0)
    model_id = m.model_id; del m
    port = free_port()
    proc = start_server(d, port, a.threads, a.concurrency)
    try:
        client = OpenAI(base_url=f'http://127.0.0.1:{port}/v1', api_key='none', max_retries=0, timeout=120)
        client.chat.completions.create(model=model_id, messages=[{'role': 'user', 'content': 'hi'}], max_tokens=4)  # warm up
        runs = []
        for c in a.clients:
            for stream in (False, True):
                r = load(client, model_id, c, a.requests, a.max_seconds, a.max_tokens, stream)
                print(f"[{which}] clients={c} stream={stream}: {r['req_per_s']} req/s, p50 {r['latency_p50_s']} s, p95 {r['latency_p95_s']} s, errors {r['errors']}", file=sys.stderr)
                runs.append(r)
    finally:
        proc.send_signal(2); proc.wait(30)
    return dict(model=which, model_id=model_id, direct_generate_s=round(statistics.median(direct), 3), runs=runs)

def _label(model:str, quantize:str|None=None)->str:
    if model == 'tiny': return 'tiny (random weights)'
    if model.startswith('fused-'): return f"SmolLM2-135M-Instruct fused {model.split('-', 1)[1]}"
    return f"SmolLM2-135M-Instruct {quantize or 'fp32'}"     # `quantize`: results written before issue 11 (plain int8/int4)

SERVE_COLUMNS = [column('label', 'model'), column('clients', 'clients'), column('stream', 'streamed'), column('requests', 'requests'),
                 column('req_per_s', 'req/s', '{:.2f}', True), column('completion_tokens_per_s', 'tokens/s', '{:.1f}'),
                 column('latency_p50_s', 'p50 latency (s)', '{:.3f}', True), column('latency_p95_s', 'p95 latency (s)', '{:.3f}'),
                 column('ttft_p50_s', 'p50 TTFT (s)', '{:.3f}'), column('errors', 'errors')]

def write(results:dict):
    "Add the title, intro, table and notes to `results` and write serve.json and serve.md"
    a = results['settings']
    rows = [dict(r, label=_label(m['model'], a.get('quantize'))) for m in results['models'] for r in m['runs']]
    results.update(title='Serving over HTTP', reproduce='python benchmarks/serve_bench.py',
        intro=(f"`convchat serve` on loopback, {a['max_tokens']} greedy tokens per request, server with {a['concurrency']} running generations "
               f"with ONNX Runtime on {a['threads']} thread(s) each, clients using the `openai` client; up to {a['requests']} requests or "
               f"{a['max_seconds']} s per row. Compare rows within one run."),
        tables=[dict(columns=SERVE_COLUMNS, rows=rows)],
        notes=['The same request answered by `ChatModel.generate` in-process, without HTTP (median of 4): ' +
               ', '.join(f"{_label(m['model'], a.get('quantize'))} {m['direct_generate_s']} s" for m in results['models']) + '. '
               'Compared with the one-client rows this is the cost of HTTP, JSON and the `openai` client. With more clients than running '
               'generations the rest wait in line: requests per second stay at what the CPU can generate, while latency and time to first '
               'token grow with the wait.'])
    return write_result('serve', results)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='tiny model only')
    ap.add_argument('--models', nargs='+', choices=CHOICES, default=list(MODELS))
    ap.add_argument('--clients', type=int, nargs='+', default=[1, 4])
    ap.add_argument('--requests', type=int, default=16, help='requests per row (at most)')
    ap.add_argument('--max-seconds', type=float, default=30, help='time bound per row')
    ap.add_argument('--max-tokens', type=int, default=32)
    ap.add_argument('--threads', type=int, default=None, help="ONNX Runtime threads per generation (default: run_server's, cores // concurrency)")
    ap.add_argument('--concurrency', type=int, default=2)
    a = ap.parse_args()
    a.threads = a.threads or max(1, (os.cpu_count() or 1) // a.concurrency)   # what run_server picks by default
    import onnxruntime, fastapi, uvicorn, openai
    results = dict(settings=dict(clients=a.clients, requests=a.requests, max_seconds=a.max_seconds, max_tokens=a.max_tokens,
                                 threads=a.threads, concurrency=a.concurrency),
                   machine=dict(cpu_info(a.threads), versions=dict(python=platform.python_version(), onnxruntime=onnxruntime.__version__,
                                fastapi=fastapi.__version__, uvicorn=uvicorn.__version__, openai=openai.__version__)),
                   models=[])
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for which in (['tiny'] if a.quick else a.models):
            results['models'].append(bench_model(which, Path(tmp), a))
    results['machine'].update(load_avg=round(os.getloadavg()[0], 2), note=f'shared; load {load0:.2f} at the start')
    print(write(results).read_text())

if __name__ == '__main__': main()
