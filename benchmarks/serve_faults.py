"""`convchat serve` under a bad-request mix: how many requests it answers, with which status, and its memory before and after.

    python benchmarks/serve_faults.py [--model-dir DIR] [--requests 300] [--rounds 3] [--clients 4] [--max-seconds 120]

The server runs in its own process (`convchat.serve.run_server` on 127.0.0.1, 2 running generations, 8 in line, its API key
taken from `CONVCHAT_API_KEY`) around a tiny random Llama-style model (or `--model-dir`). `--clients` threads send
`--requests` requests per round, in a fixed mix: good plain and streamed requests, and bad ones (malformed JSON, a lone
UTF-16 surrogate, NaN and a 1e-30 temperature, an unknown model, no API key, a foreign Host header, a 5 MB body), and
clients that hang up in the middle of a long plain or streamed generation. Each answer is checked against the status
its kind should get. The server's resident memory (RSS) is read after a warm-up and after each round, and its CPU time
over one second once it reports nothing running: an abandoned generation that kept running would show there.
"""
import argparse, collections, json, os, platform, socket, subprocess, sys, tempfile, threading, time
from pathlib import Path

KEY = 'bench-key'
MSGS = [{'role': 'user', 'content': 'What time does the bakery open on Saturdays?'}]
# kind: expected status (None: the client hangs up, there is no answer to read)
KINDS = {'good': 200, 'good_stream': 200, 'bad_json': 400, 'surrogate': 400, 'nan_temperature': 400, 'tiny_temperature': 400,
         'unknown_model': 404, 'no_key': 401, 'foreign_host': 421, 'too_large': 413, 'abort_plain': None, 'abort_stream': None}

def cpu_model()->str:
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()

def rss_mb(pid:int)->float:
    try:
        import psutil
        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        kb = next(int(l.split()[1]) for l in open(f'/proc/{pid}/status') if l.startswith('VmRSS:'))
        return kb / 1024

def cpu_s(pid:int)->float:
    try:
        import psutil
        t = psutil.Process(pid).cpu_times(); return t.user + t.system
    except ImportError:
        f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')

def tiny_model(work:Path)->Path:
    from convchat.models import save_tiny_model
    from convchat.convert import export
    return Path(export(save_tiny_model(work/'tiny-hf', 'llama'), work/'tiny-onnx', graph='plain', bits=None, verify=False, progress=False))

def start_server(model_dir:Path)->tuple:
    from convchat.serve import listen_socket
    s = listen_socket('127.0.0.1', 0); port = s.getsockname()[1]; s.close()
    code = (f"from convchat.serve import run_server; run_server({str(model_dir)!r}, port={port}, threads=1, "
            "max_concurrency=2, max_queue=8, log_level='warning')")
    proc = subprocess.Popen([sys.executable, '-c', code], stderr=subprocess.PIPE, text=True, env={**os.environ, 'CONVCHAT_API_KEY': KEY})
    line = proc.stderr.readline()
    if 'convchat serve:' not in line: raise RuntimeError(f"server did not start: {line}{proc.stderr.read()}")
    log = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()   # keep draining its log
    return proc, port, log

def raw(port:int, body:bytes, host:str=None, key:str|None=KEY)->socket.socket:
    "A connection on which one POST /v1/chat/completions has been sent."
    s = socket.create_connection(('127.0.0.1', port), timeout=30)
    auth = f"Authorization: Bearer {key}\r\n" if key else ''
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return s

def status_of(s:socket.socket)->int:
    "Read one response's status line and body (by Content-Length or until close)."
    with s, s.makefile('rb') as f:
        status, n = int(f.readline().split()[1]), None
        while (l := f.readline()) not in (b'\r\n', b''):
            if l.lower().startswith(b'content-length:'): n = int(l.split(b':')[1])
        body = f.read(n) if n is not None else f.read()
        if status >= 400: assert set(json.loads(body)['error']) == {'message', 'type', 'param', 'code'}, body[:200]
    return status

def one(kind:str, port:int, model_id:str)->int|None:
    "Send one request of `kind`; its status, or None for a client that hung up."
    js = lambda **kw: json.dumps({'model': model_id, 'messages': MSGS, **kw}).encode()
    m = b'"messages": [{"role": "user", "content": "hi"}]'
    if kind == 'good': return status_of(raw(port, js(max_tokens=16)))
    if kind == 'good_stream': return status_of(raw(port, js(max_tokens=16, stream=True)))
    if kind == 'bad_json': return status_of(raw(port, b'{"messages": [{"role": "user", "content": '))
    if kind == 'surrogate': return status_of(raw(port, b'{"messages": [{"role": "user", "content": "\\ud800"}]}'))
    if kind == 'nan_temperature': return status_of(raw(port, b'{"temperature": NaN, ' + m + b'}'))
    if kind == 'tiny_temperature': return status_of(raw(port, b'{"temperature": 1e-30, ' + m + b'}'))
    if kind == 'unknown_model': return status_of(raw(port, js(max_tokens=4) .replace(model_id.encode(), b'gpt-4o', 1)))
    if kind == 'no_key': return status_of(raw(port, js(max_tokens=4), key=None))
    if kind == 'foreign_host': return status_of(raw(port, js(max_tokens=4), host='attacker.example'))
    if kind == 'too_large': return status_of(raw(port, b'{"pad": "' + b'x'*5_000_000 + b'", ' + m + b'}'))
    if kind == 'abort_plain':
        s = raw(port, js(max_tokens=512, temperature=1.0)); time.sleep(0.05); s.close(); return None
    if kind == 'abort_stream':
        s = raw(port, js(max_tokens=512, temperature=1.0, stream=True)); s.recv(1); s.close(); return None
    raise ValueError(kind)

def health(port:int)->dict:
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    s.sendall(f"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    with s, s.makefile('rb') as f: return json.loads(f.read().split(b'\r\n\r\n', 1)[1])

def round_(port:int, model_id:str, n:int, clients:int, max_seconds:float)->dict:
    kinds, lock, counts, wrong = list(KINDS), threading.Lock(), collections.Counter(), collections.Counter()
    it, t_end = iter(range(n)), time.perf_counter() + max_seconds
    def worker():
        while time.perf_counter() < t_end:
            with lock: i = next(it, None)
            if i is None: return
            kind = kinds[i % len(kinds)]
            try: st = one(kind, port, model_id)
            except Exception as e: st = type(e).__name__
            with lock:
                counts[st if st is not None else 'hung up'] += 1
                if st != KINDS[kind] and st != 429: wrong[f'{kind}->{st}'] += 1
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts: t.start()
    for t in ts: t.join()
    return dict(seconds=time.perf_counter()-t0, sent=sum(counts.values()), statuses=dict(counts), unexpected=dict(wrong))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model-dir', help='an exported model folder (default: a tiny random model)')
    ap.add_argument('--requests', type=int, default=300, help='requests per round')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--clients', type=int, default=4)
    ap.add_argument('--max-seconds', type=float, default=120, help='time bound per round')
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix='serve-faults-'))
    model_dir = Path(a.model_dir) if a.model_dir else tiny_model(work)
    import convchat.serve  # noqa: F401  (fails early, with the install hint, without FastAPI)
    proc, port, log = start_server(model_dir)
    try:
        model_id = model_dir.name
        for _ in range(5): assert one('good', port, model_id) == 200   # warm-up: model loaded, arenas grown
        print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), Python {platform.python_version()}, model {model_id}")
        rss = [rss_mb(proc.pid)]
        print(f"server RSS after warm-up: {rss[0]:.1f} MiB")
        for r in range(a.rounds):
            res = round_(port, model_id, a.requests, a.clients, a.max_seconds)
            t0 = time.perf_counter()
            while (h := health(port))['running'] + h['waiting'] and time.perf_counter()-t0 < 30: time.sleep(0.01)
            idle_after = time.perf_counter()-t0
            c0 = cpu_s(proc.pid); time.sleep(1.0); idle_cpu = cpu_s(proc.pid)-c0
            rss.append(rss_mb(proc.pid))
            answered = sum(v for k, v in res['statuses'].items() if isinstance(k, int))
            print(f"round {r+1}: {res['sent']} requests in {res['seconds']:.1f} s ({res['sent']/res['seconds']:.1f}/s), "
                  f"{answered} answered; statuses {dict(sorted(res['statuses'].items(), key=str))}; "
                  f"unexpected {res['unexpected'] or 'none'}; idle {idle_after:.2f} s after the last client, "
                  f"then {idle_cpu*1000:.0f} ms CPU in 1 s; RSS {rss[-1]:.1f} MiB")
        print(f"server RSS: {rss[0]:.1f} MiB after warm-up, {rss[-1]:.1f} MiB after {a.rounds} rounds "
              f"({rss[-1]-rss[0]:+.1f} MiB; per round: {', '.join(f'{x:.1f}' for x in rss[1:])})")
        errors = [l for l in log if 'Traceback' in l or 'ERROR' in l]
        print(f"server log: {len(log)} lines, {len(errors)} errors" + (f"; first: {errors[0].strip()}" if errors else ''))
    finally:
        proc.send_signal(2)
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill()

if __name__ == '__main__': main()
