"""What the default model's exact 4-bit grid costs on these CPUs, and why it has to be exact: three measurements.

    python benchmarks/int4_limits.py [--work /tmp/convchat-int4-limits] [--parts kernels profile layers]

1. kernels: one `MatMulNBits` (the default model's qkv shape, 576 -> 960), its weights on the Q4_1 grid (blocks of 32 with
   their own minimum): 4 bits with integer zero points (not exact), with float zero points (exact: what Q4_1 needs), and
   8 bits in asymmetric blocks of 64 (the 8-bit default); microseconds a call, natively and under the AVX2 CPUID mask.
2. profile: ONNX Runtime's own profile of 64 greedy decode steps of four graphs (the 8-bit default; the 4-bit default, whose
   exact linears take their block sums as extra inputs; the previous 4-bit default, with a float offset MatMul and an Add
   per exact linear; the 4-bit build without any exact linear), the time a token spends in each kind of node, natively and
   under the mask.
3. layers: the KL (teacher-forced, against the fused fp32 graph) that each linear adds when it alone leaves the exact grid
   for the fitted integer grid (`fuse._q4_zp_nodes`), the others exact: how much of the exact grid could go.

The graphs of part 2 come from benchmarks/int4_study.py's work folder (run it first). Results go to
benchmarks/results/int4_limits.json and int4_limits.md.
"""
import argparse, json, os, re, statistics, subprocess, sys, time
from pathlib import Path
import numpy as np
from benchlib import column, machine_info, write_result

ROOT = Path(__file__).resolve().parent.parent
STUDY = Path('/tmp/convchat-int4-study')
GRAPHS = {'8-bit, blocks of 64 (convert default under AVX2)': 'int8',
          '4-bit default (exact linears: block sums as extra inputs)': 'minmax-b32---fitted-o-proj-gate-up--8-bit-head-in-asymmetric-blocks-of-64',
          'previous 4-bit default (exact linears: offset MatMul + Add)': 'minmax-b32---fitted-o-proj-gate-up--symmetric-8-bit-head-in-blocks-of-32',
          '4-bit, fitted grid everywhere (no exact linear; fails the gate)': 'fitted-integer-grids-everywhere'}

def _session(nodes, inits, K, N, threads=2):
    import onnxruntime as ort
    from onnx import helper, TensorProto
    g = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 1, K])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 1, N])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17), helper.make_opsetid('com.microsoft', 1)])
    so = ort.SessionOptions(); so.intra_op_num_threads = threads
    return ort.InferenceSession(m.SerializeToString(), so, providers=['CPUExecutionProvider'])

def kernels_one(reps=5, calls=400)->list:
    "Microseconds a call and largest error of one linear in each representation (run natively or under the mask)."
    from onnx import helper
    sys.path.insert(0, str(ROOT))
    from convchat.fuse import _minmax_codes, _pack4, _onnx_tensor, _q8_nodes
    K, N, B = 576, 960, 32
    rng = np.random.default_rng(0)
    d = rng.uniform(0.002, 0.01, (N, K//B)).astype(np.float32); m = rng.uniform(-0.08, -0.02, (N, K//B)).astype(np.float32)
    c = rng.integers(0, 16, (N, K//B, B)); c[..., 0], c[..., 1] = 0, 15      # a Q4_1 block's codes span 0-15 (its min and max)
    w = (d[..., None]*c + m[..., None]).reshape(N, K).T.astype(np.float32)
    q, s, lo = _minmax_codes(w, B)
    zi = np.clip(np.round(-lo/s), 0, 15).astype(np.uint8); zp = np.zeros((N, K//B + (K//B) % 2), np.uint8); zp[:, :K//B] = zi
    def nbits(zname, acc=4):
        return helper.make_node('MatMulNBits', ['x', 'q', 's'] + [zname], ['y'], domain='com.microsoft', K=K, N=N, bits=4,
                                block_size=B, accuracy_level=acc)
    base = [_onnx_tensor(_pack4(q), 'q'), _onnx_tensor(s.reshape(-1), 's')]
    class Node: input, output, name = ['x', 'w'], ['y'], 'n'
    n8, i8 = _q8_nodes(Node, w, 64, 4, symmetric=False)
    cands = {'4 bits, integer zero points (not exact)': ([nbits('z')], base + [_onnx_tensor(_pack4(zp).reshape(-1), 'z')]),
             '4 bits, float zero points (exact)': ([nbits('z')], base + [_onnx_tensor((-lo/s).astype(np.float32).reshape(-1), 'z')]),
             '8 bits, asymmetric blocks of 64': (n8, i8)}
    x = rng.standard_normal((1, 1, K)).astype(np.float32); ref = x[0] @ w
    sess = {k: _session(nd, ini, K, N) for k, (nd, ini) in cands.items()}
    times = {k: [] for k in sess}
    for _ in range(reps):
        for k, se in sess.items():
            for _ in range(5): se.run(None, {'x': x})
            t = time.perf_counter()
            for _ in range(calls): se.run(None, {'x': x})
            times[k].append((time.perf_counter() - t)/calls*1e6)
    return [dict(kernel=k, us=statistics.median(times[k]), err=float(np.abs(sess[k].run(None, {'x': x})[0][0] - ref).max()))
            for k in sess]

def _group(name:str, op:str)->str:
    if 'offset' in name or 'blocksum' in name: return 'exact-grid nodes (block sums, Concat, or offset MatMul + Add)'
    if op == 'MatMulNBits': return 'LM head' if 'lm_head' in name else 'linears (MatMulNBits)'
    if op == 'GroupQueryAttention': return 'attention'
    return 'other nodes'

def profile_one(d:str, tokens=64)->dict:
    "Microseconds a decode step spends in each node group of graph `d` (ONNX Runtime's profiler; the prompt's run left out)."
    sys.path.insert(0, str(ROOT))
    import convchat.runtime as rt, convchat.decoder as dec
    from int8_study import SPEED_Q
    orig = dec._session_options
    def opts(threads):
        so = orig(threads); so.enable_profiling = True; so.profile_file_prefix = str(Path(d)/'profile'); return so
    dec._session_options = opts                  # `Decoder` (convchat.decoder) makes its session with it
    m = rt.ChatModel(d, threads=2); m.eos_ids = []
    m.generate([{'role': 'user', 'content': SPEED_Q}], max_new_tokens=tokens, loop_guard=False)
    f = m.decoder.session.end_profiling()
    ev = json.loads(Path(f).read_text()); Path(f).unlink()
    runs = sorted((e['ts'], e['ts'] + e['dur']) for e in ev if e.get('cat') == 'Session' and e['name'] == 'model_run')[1:]
    out, nodes = {}, [e for e in ev if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time')]
    for e in nodes:
        if any(a <= e['ts'] <= b for a, b in runs):
            g = _group(e['name'], e['args'].get('op_name', '')); out[g] = out.get(g, 0) + e['dur']
    return {g: v/len(runs) for g, v in out.items()} | {'steps': len(runs)}

def child(args, mode, work):
    from int8_study import env_for
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env_for(mode, work))
    if p.returncode: raise RuntimeError(f'{args} ({mode}) failed:\n{p.stderr[-2000:]}')
    return json.loads(p.stdout.strip().splitlines()[-1])

# ---- part 3: which linears need the exact grid ------------------------------------------------------------------------
def layers(work:Path)->dict:
    "KL added by each linear alone on the fitted grid (the attention output projections fitted throughout, as by default)."
    import onnx, shutil
    sys.path.insert(0, str(ROOT))
    from onnx import numpy_helper
    from convchat.fuse import (_build_genai, calibrate, _calib_texts, _q4_nodes, _q4_zp_nodes, _blocksum_nodes, _q8_nodes,
                               _is_head, _builder_args, INT4_BUILD)
    from convchat.models import default_model_path, load_tokenizer
    from convchat.verify import gate_token_ids
    from convchat.runtime import _kv_dims
    from convchat.sampling import log_softmax
    import onnxruntime as ort
    src, fp = default_model_path(), work/'fp32-fused-gate-up'
    if not (fp/'model.onnx').exists():
        fp.mkdir(parents=True, exist_ok=True)
        _build_genai(src, fp, None, _builder_args(4, INT4_BUILD)); shutil.copy2(src/'config.json', fp)
    texts = dict(calib=_calib_texts(src), gate=gate_token_ids(load_tokenizer(src)))
    stats, kv = calibrate(fp/'model.onnx', texts['calib']), _kv_dims(fp/'config.json')
    base = onnx.load(str(fp/'model.onnx'))
    inits = {i.name: i for i in base.graph.initializer}
    mm = [n for n in base.graph.node if n.op_type == 'MatMul' and n.input[1] in inits]
    V = {}
    for n in mm:
        w = numpy_helper.to_array(inits[n.input[1]]); acc = 0 if '/o_proj/' in n.name else 4
        if _is_head(n): V[n.name] = dict(head=_q8_nodes(n, w, 32, 4)); continue
        mu, H = stats[n.input[0]]
        V[n.name] = dict(exact=_q4_nodes(n, w, 32, acc), fit=_q4_zp_nodes(n, w, 32, acc, H, mu), K=w.shape[0])
    def graph(fitted):
        m = onnx.ModelProto(); m.CopyFrom(base); nodes, added, summed, names = [], {}, set(), {n.name for n in mm}
        for n in base.graph.node:
            if n.name not in names: nodes.append(n); continue
            v = V[n.name]; new, ini = v.get('head') or (v['fit'] if n.name in fitted else v['exact'])
            if 'exact' in v and n.name not in fitted and n.input[0] not in summed:
                bn, bi = _blocksum_nodes(n.input[0], v['K'], 32); new, ini = bn + new, bi + ini; summed.add(n.input[0])
            nodes += new; added.update({i.name: i for i in ini})
        used = {i for n in nodes for i in n.input}
        m.graph.ClearField('node'); m.graph.node.extend(nodes)
        keep = [i for i in base.graph.initializer if i.name in used]
        m.graph.ClearField('initializer'); m.graph.initializer.extend(keep + list(added.values()))
        so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.log_severity_level = 3
        return ort.InferenceSession(m.SerializeToString(), so, providers=['CPUExecutionProvider'])
    def logp(s, ids):
        feed = dict(input_ids=np.array([ids], np.int64), attention_mask=np.ones((1, len(ids)), np.int64))
        feed |= {i.name: np.zeros((1, kv['kv_heads'], 0, kv['head_dim']), np.float32) for i in s.get_inputs() if i.name.startswith('past')}
        return log_softmax(s.run(['logits'], feed)[0][0].astype(np.float64))
    so = ort.SessionOptions(); so.intra_op_num_threads = 2
    ref = ort.InferenceSession(str(fp/'model.onnx'), so, providers=['CPUExecutionProvider'])
    refs = {k: [logp(ref, ids) for ids in t] for k, t in texts.items()}
    def kl(s): return {k: sum(float((np.exp(r)*(r - logp(s, ids))).sum()) for ids, r in zip(t, refs[k]))/sum(map(len, t))
                       for k, t in texts.items()}
    o = [n.name for n in mm if '/o_proj/' in n.name]
    out = {'o_proj fitted, the rest exact': kl(graph(set(o))), 'every linear fitted': kl(graph({n.name for n in mm}))}
    for n in mm:
        if 'exact' in V[n.name] and n.name not in o:
            out[n.name] = kl(graph(set(o) | {n.name})); print(n.name, out[n.name], file=sys.stderr, flush=True)
    return out

def report(res)->dict:
    tables, notes = [], []
    if 'kernels' in res:
        avx2 = {r['kernel']: r['us'] for r in res['kernels'].get('avx2', [])}
        rows = [dict(kernel=r['kernel'], native=r['us'], avx2=avx2.get(r['kernel']), err=r['err']) for r in res['kernels']['native']]
        tables.append(dict(title='One linear (576 -> 960, Q4_1 weights): microseconds a call', rows=rows, columns=[
            column('kernel', 'MatMulNBits'), column('native', 'native µs', '{:.1f}', True), column('avx2', 'AVX2 µs', '{:.1f}', True),
            column('err', 'largest output error', '{:.2g}')]))
        notes.append("Largest output error: against the float product with the Q4_1 weights, for one random input (outputs of size "
                     "about 1). The float zero points give it exactly because that path computes in fp32; the others round the input to int8 "
                     "(accuracy_level 4), and the integer zero points move each block's levels by up to half a step.")
    if 'profile' in res:
        groups = sorted({g for m in res['profile'].values() for p in m.values() for g in p if g != 'steps'})
        rows = [dict(graph=n, mode=mode, total=sum(v for g, v in p.items() if g != 'steps')/1000,
                     **{g: p.get(g, 0)/1000 for g in groups}) for mode, m in res['profile'].items() for n, p in m.items()]
        tables.append(dict(title='Where a decode step goes (ONNX Runtime profile, ms a token)', rows=rows, columns=[
            column('graph', 'graph'), column('mode', 'CPU'), column('total', 'all nodes', '{:.2f}')] +
            [column(g, g, '{:.2f}') for g in groups]))
    if 'layers' in res:
        L = res['layers']; b = L['o_proj fitted, the rest exact']
        d = {n: {k: v[k] - b[k] for k in v} for n, v in L.items() if n.startswith('/model')}
        top = sorted(d, key=lambda n: -d[n]['calib'])
        def part(n): return re.search(r'/(\w+_proj)/', n).group(1)
        rows = [dict(linear=re.sub(r'^/model/|/MatMul$', '', n), calib=d[n]['calib'], gate=d[n]['gate']) for n in top[:12]]
        for p in sorted({part(n) for n in d}):
            v = [d[n]['calib'] for n in d if part(n) == p]
            rows.append(dict(linear=f'{p}: median of {len(v)}', calib=statistics.median(v), gate=statistics.median(d[n]['gate'] for n in d if part(n) == p)))
        rows.append(dict(linear=f'sum of all {len(d)}', calib=sum(x['calib'] for x in d.values()), gate=sum(x['gate'] for x in d.values())))
        tables.append(dict(title='KL added when one linear alone leaves the exact grid (the rest exact, o_proj fitted)', rows=rows,
                           columns=[column('linear', 'linear'), column('calib', 'KL added, ferry conversations', '{:+.4f}', True),
                                    column('gate', 'KL added, example conversations (the gate)', '{:+.4f}')]))
        notes.append(f"KL of the base (o_proj fitted, the rest exact): {b['gate']:.4f} on the gate's text; every linear fitted: "
                     f"{L['every linear fitted']['gate']:.4f}. The gate's limit is 0.05.")
        cur = [n for n in d if part(n) == 'gate_up_proj' and 6 <= int(re.search(r'layers\.(\d+)/', n).group(1)) < 24]
        low = sorted(x['calib'] for x in d.values())
        notes.append(f"The default's fitted gate/up projections (layers 6-23) add {sum(d[n]['calib'] for n in cur):+.3f} one by one; "
                     f"the {len(cur)} least sensitive linears {sum(low[:len(cur)]):+.3f}, the 30 least {sum(low[:30]):+.3f}. Chosen one "
                     "by one, a dozen more linears could leave the exact grid at the default's KL (measured with the float offsets of "
                     "the previous default, before the block sums became extra inputs).")
    return dict(res, title="What the exact 4-bit grid costs: kernels, a decode step's nodes, each linear's share of the KL",
                reproduce='python benchmarks/int4_limits.py', tables=tables, notes=notes,
                intro=("SmolLM2-135M-Instruct, whose layer weights are Q4_1 (4-bit codes, a scale and a float minimum per block of 32). "
                       "ONNX Runtime's `MatMulNBits` takes integer zero points on its fast path; float ones (exact for Q4_1) send it to "
                       "its fp32 path. convchat's exact 4-bit grid therefore needs the sum of each block of inputs: the default feeds "
                       "them to the same `MatMulNBits` as extra inputs (a small MatMul and a Concat per input), with the offsets as extra "
                       "4-bit weight rows; the previous default added a float MatMul of the offsets and an Add per linear. 'AVX2' = the "
                       "CPUID mask of benchmarks/int8_study.py on the same CPU."))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--work', default='/tmp/convchat-int4-limits')
    ap.add_argument('--study', default=str(STUDY), help="benchmarks/int4_study.py's work folder (the graphs profiled)")
    ap.add_argument('--parts', nargs='*', default=['kernels', 'profile', 'layers'])
    ap.add_argument('--kernels-one', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--profile-one', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.kernels_one: return print(json.dumps(kernels_one()))
    if a.profile_one: return print(json.dumps(profile_one(a.profile_one)))
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    f = ROOT/'benchmarks/results/int4_limits.json'
    res = json.loads(f.read_text()) if f.exists() else {}
    res['machine'] = machine_info(2)
    if 'kernels' in a.parts: res['kernels'] = {m: child(['--kernels-one'], m, work) for m in ('native', 'avx2')}
    if 'profile' in a.parts:
        res['profile'] = {m: {n: child(['--profile-one', str(Path(a.study)/d)], m, work) for n, d in GRAPHS.items()}
                          for m in ('native', 'avx2')}
    if 'layers' in a.parts: res['layers'] = layers(work)
    for k in ('tables', 'notes', 'intro', 'title', 'reproduce'): res.pop(k, None)
    print(write_result('int4_limits', report(res)).read_text(), file=sys.stderr)

if __name__ == '__main__': main()
