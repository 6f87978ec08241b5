"""`convchat serve` under a bad-request mix with hostile and slow clients beside good ones: how many good requests complete,
which status each kind gets, and the server's memory before and after.

    python benchmarks/serve_faults.py [--model-dir DIR] [--requests 300] [--rounds 3] [--clients 4] [--slow-clients 50] [--max-seconds 120] [--write]

The server runs in its own process (`convchat.serve.run_server` on 127.0.0.1, 2 running generations, 8 in line, its API key
taken from `CONVCHAT_API_KEY`) around a tiny random Llama-style model (or `--model-dir`). `--clients` threads send
`--requests` requests per round, in a fixed mix: good plain and streamed requests, and bad ones (malformed JSON, a lone
UTF-16 surrogate, NaN and a 1e-30 temperature, an unknown model, no API key, a foreign Host header, a 5 MB body), hostile
ones (JSON schemas whose grammar compiles but cannot be decoded, a request for more generations than the server holds, a
3 MB prompt), and clients that hang up in the middle of a long plain or streamed generation. Beside them, `--slow-clients`
threads each hold a connection that sends half a request head and then a byte every 2 s, reconnecting when the server
drops it (it runs with a 3 s head timeout here). Each answer is checked against the status
its kind should get. The server's resident memory (RSS) is read after a warm-up and after each round, and its CPU time
over one second once it reports nothing running: an abandoned generation that kept running would show there.
"""
import argparse, collections, json, os, platform, socket, subprocess, sys, tempfile, threading, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from benchlib import machine_info, column, write_result
from convchat.core import cpu_info

KEY = 'bench-key'
MSGS = [{'role': 'user', 'content': 'What time does the bakery open on Saturdays?'}]
# kind: expected status (None: the client hangs up, there is no answer to read)
KINDS = {'good': 200, 'good_stream': 200, 'bad_json': 400, 'surrogate': 400, 'nan_temperature': 400, 'tiny_temperature': 400,
         'unknown_model': 404, 'no_key': 401, 'foreign_host': 421, 'too_large': 413, 'abort_plain': None, 'abort_stream': None,
         'recursive_schema': 400, 'wide_schema': 400, 'fan_out': 400, 'huge_prompt': 400}
GOOD = ('good', 'good_stream')
REC = {'$defs': {'n': {'type': 'object', 'properties': {'c': {'$ref': '#/$defs/n'}}, 'required': ['c']}}, '$ref': '#/$defs/n'}
WIDE = {'anyOf': [{'type': 'object', 'properties': {f'k{i}': {'const': i}}, 'required': [f'k{i}']} for i in range(3000)]}
HEAD_TIMEOUT = 3

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
            f"max_concurrency=2, max_queue=8, log_level='warning', limits=__import__('convchat.connections').connections.ConnectionLimits(head_timeout={HEAD_TIMEOUT}))")
    proc = subprocess.Popen([sys.executable, '-c', code], stderr=subprocess.PIPE, text=True, env={**os.environ, 'CONVCHAT_API_KEY': KEY})
    line = proc.stderr.readline()
    if 'convchat serve:' not in line: raise RuntimeError(f"server did not start: {line}{proc.stderr.read()}")
    log = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()   # keep draining its log
    return proc, port, log

def raw(port:int, body:bytes, host:str=None, key:str|None=KEY, path:str='/v1/chat/completions')->socket.socket:
    "A connection on which one POST has been sent."
    s = socket.create_connection(('127.0.0.1', port), timeout=30)
    auth = f"Authorization: Bearer {key}\r\n" if key else ''
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}"
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
    schema = lambda sc: {'type': 'json_schema', 'json_schema': {'name': 'x', 'schema': sc}}
    if kind == 'recursive_schema': return status_of(raw(port, js(max_tokens=16, response_format=schema(REC))))
    if kind == 'wide_schema': return status_of(raw(port, js(max_tokens=16, response_format=schema(WIDE))))
    if kind == 'fan_out': return status_of(raw(port, json.dumps({'prompt': ['a']*10, 'n': 16, 'max_tokens': 4}).encode(), path='/v1/completions'))
    if kind == 'huge_prompt': return status_of(raw(port, json.dumps({'messages': [{'role': 'user', 'content': 'x'*3_000_000}]}).encode()))
    if kind == 'abort_plain':
        s = raw(port, js(max_tokens=512, temperature=1.0)); time.sleep(0.05); s.close(); return None
    if kind == 'abort_stream':
        s = raw(port, js(max_tokens=512, temperature=1.0, stream=True)); s.recv(1); s.close(); return None
    raise ValueError(kind)

def health(port:int)->dict:
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    s.sendall(f"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    with s, s.makefile('rb') as f: return json.loads(f.read().split(b'\r\n\r\n', 1)[1])

def slow_client(port:int, stop:threading.Event, counts:collections.Counter, lock:threading.Lock):
    "Hold a connection that sends half a request head, then a byte every 2 s; when the server drops it, count how, and reconnect."
    while not stop.is_set():
        try: s = socket.create_connection(('127.0.0.1', port), timeout=10)
        except OSError: 
            with lock: counts['connect failed'] += 1
            time.sleep(0.5); continue
        with lock: counts['opened'] += 1
        how = 'still open at the end'
        try:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Le")
            s.settimeout(2)
            while not stop.is_set():
                try: d = s.recv(100)
                except socket.timeout: s.sendall(b"n"); continue
                how = 'answered 408' if d.startswith(b'HTTP/1.1 408') else 'answered 503' if d.startswith(b'HTTP/1.1 503') else 'closed'; break
        except OSError: how = 'closed'
        finally: s.close()
        with lock: counts[how] += 1

def round_(port:int, model_id:str, n:int, clients:int, max_seconds:float, slow:int=0)->dict:
    kinds, lock, counts, wrong, good = list(KINDS), threading.Lock(), collections.Counter(), collections.Counter(), collections.Counter()
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
                if kind in GOOD: good['sent'] += 1; good['completed'] += st == 200
                if st != KINDS[kind] and st != 429: wrong[f'{kind}->{st}'] += 1
    t0, stop, slow_counts = time.perf_counter(), threading.Event(), collections.Counter()
    sl = [threading.Thread(target=slow_client, args=(port, stop, slow_counts, lock), daemon=True) for _ in range(slow)]
    for t in sl: t.start()
    time.sleep(0.5 if slow else 0)
    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts: t.start()
    for t in ts: t.join()
    stop.set()
    for t in sl: t.join(5)
    return dict(seconds=time.perf_counter()-t0, sent=sum(counts.values()), statuses=dict(counts), unexpected=dict(wrong),
                good=good, slow=dict(slow_counts))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model-dir', help='an exported model folder (default: a tiny random model)')
    ap.add_argument('--requests', type=int, default=300, help='requests per round')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--clients', type=int, default=4)
    ap.add_argument('--slow-clients', type=int, default=50, help='connections held open by clients that send a byte every 2 s')
    ap.add_argument('--max-seconds', type=float, default=120, help='time bound per round')
    ap.add_argument('--write', action='store_true', help='write benchmarks/results/serve_faults.json and .md')
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix='serve-faults-'))
    model_dir = Path(a.model_dir) if a.model_dir else tiny_model(work)
    import convchat.serve  # noqa: F401  (fails early, with the install hint, without FastAPI)
    proc, port, log = start_server(model_dir)
    try:
        model_id = model_dir.name
        for _ in range(5): assert one('good', port, model_id) == 200   # warm-up: model loaded, arenas grown
        print(f"CPU: {cpu_info()}, Python {platform.python_version()}, model {model_id}")
        rss = [rss_mb(proc.pid)]
        print(f"server RSS after warm-up: {rss[0]:.1f} MiB")
        rows = []
        for r in range(a.rounds):
            res = round_(port, model_id, a.requests, a.clients, a.max_seconds, a.slow_clients)
            t0 = time.perf_counter()
            while (h := health(port))['running'] + h['waiting'] and time.perf_counter()-t0 < 30: time.sleep(0.01)
            idle_after = time.perf_counter()-t0
            c0 = cpu_s(proc.pid); time.sleep(1.0); idle_cpu = cpu_s(proc.pid)-c0
            rss.append(rss_mb(proc.pid))
            answered = sum(v for k, v in res['statuses'].items() if isinstance(k, int))
            print(f"round {r+1}: {res['sent']} requests in {res['seconds']:.1f} s ({res['sent']/res['seconds']:.1f}/s), "
                  f"{answered} answered; statuses {dict(sorted(res['statuses'].items(), key=str))}; "
                  f"unexpected {res['unexpected'] or 'none'}; idle {idle_after:.2f} s after the last client, "
                  f"then {idle_cpu*1000:.0f} ms CPU in 1 s; RSS {rss[-1]:.1f} MiB; good {res['good']['completed']}/{res['good']['sent']}; "
                  f"slow clients {dict(res['slow'])}")
            errors5 = sum(v for k, v in res['statuses'].items() if isinstance(k, int) and k >= 500)
            rows.append(dict(round=r+1, sent=res['sent'], seconds=res['seconds'], good=f"{res['good']['completed']}/{res['good']['sent']}",
                             unexpected=sum(res['unexpected'].values()), errors_5xx=errors5, hostile=res['statuses'].get(400, 0),
                             slow_opened=res['slow'].get('opened', 0), slow_408=res['slow'].get('answered 408', 0), rss_mb=rss[-1],
                             idle_cpu_ms=idle_cpu*1000))
        print(f"server RSS: {rss[0]:.1f} MiB after warm-up, {rss[-1]:.1f} MiB after {a.rounds} rounds "
              f"({rss[-1]-rss[0]:+.1f} MiB; per round: {', '.join(f'{x:.1f}' for x in rss[1:])})")
        errors = [l for l in log if 'Traceback' in l or 'ERROR' in l]
        print(f"server log: {len(log)} lines, {len(errors)} errors" + (f"; first: {errors[0].strip()}" if errors else ''))
        if a.write:
            cols = [column('round', 'round'), column('sent', 'requests sent'), column('seconds', 'seconds', '{:.1f}'),
                    column('good', 'good completed / sent'), column('unexpected', 'unexpected statuses'), column('errors_5xx', '5xx answers'),
                    column('hostile', '400 answers'), column('slow_opened', 'slow connections opened'), column('slow_408', 'slow ones answered 408'),
                    column('rss_mb', 'server RSS after (MiB)', '{:.1f}'), column('idle_cpu_ms', 'CPU in 1 s idle (ms)', '{:.0f}')]
            res = dict(title='The server under bad, hostile and slow clients',
                       intro=(f"`convchat serve` (tiny random model, 2 running and 8 waiting generations, a {HEAD_TIMEOUT} s head timeout) under "
                              f"{a.clients} clients sending {a.requests} requests per round in a fixed mix of {len(KINDS)} kinds (good plain and streamed, "
                              f"malformed, unauthorized, oversized, poisonous JSON schemas, fan-out beyond what the server holds, a 3 MB prompt, clients "
                              f"that hang up), beside {a.slow_clients} slow clients that send half a request head and then a byte every 2 s. "
                              f"Every answer is checked against the status its kind should get (429 is allowed for any)."),
                       reproduce=f"python benchmarks/serve_faults.py --requests {a.requests} --rounds {a.rounds} --clients {a.clients} --slow-clients {a.slow_clients} --write",
                       machine=machine_info(1), settings=vars(a),
                       tables=[dict(title='Rounds', columns=cols, rows=rows)],
                       notes=[f"Server RSS {rss[0]:.1f} MiB after warm-up, {rss[-1]:.1f} MiB after {a.rounds} rounds ({rss[-1]-rss[0]:+.1f} MiB).",
                              f"Server log: {len(errors)} error lines."])
            print(write_result('serve_faults', res))
    finally:
        proc.send_signal(2)
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill()

if __name__ == '__main__': main()
