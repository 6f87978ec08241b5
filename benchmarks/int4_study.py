"""Which 4-bit build of the default model's fused graph passes the 8-bit quality gate, and is it faster than 8-bit?

    python benchmarks/int4_study.py [--work /tmp/convchat-int4-study] [--reps 3] [--only NAME ...] [--no-speed]

Every candidate starts from the same fused fp32 graph (onnxruntime-genai's builder, `convchat.fuse.build_fused`) and is
quantized by ONNX Runtime's own `MatMulNBitsQuantizer` in one or two passes: the nodes a candidate keeps at 8 bits
first (the output projection, optionally the layers llama.cpp's mixed strategy protects), then the 4-bit body with the
candidate's algorithm (round to nearest, k-quant or HQQ), block size and zero points. Every MatMulNBits runs with
accuracy_level 4 (int8 activations: the fast CPU kernel). The embedding stays a float Gather (one row read a token).

Each candidate is gated like `convchat convert` gates a graph, against the fp32 fused graph, with the 8-bit
thresholds (`verify.GATES[8]`: KL <= 0.05, top-1 >= 90%, perplexity within 5%, the free-running probes), natively and
under the AVX2 CPUID mask of benchmarks/int8_study.py (ONNX Runtime then takes an AVX2-only CPU's kernels). Speed:
decode tokens/s for 128 tokens in a fresh process per contender, contenders interleaved over `--reps` rounds, natively
and under the mask, as ratios to the 8-bit graph `convchat convert` writes by default (same round).

Results go to benchmarks/results/int4_study.json and int4_study.md.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, time
from int8_study import SPEED_Q
from pathlib import Path
from benchlib import column, machine_info, write_result

ROOT = Path(__file__).resolve().parent.parent
MIXED = 'mixed'   # llama.cpp's mixed selection (the builder's `mixed_layers`): qkv and down_proj of the first/last eighth + every 3rd layer

def cand(body='default', block=32, sym=False, head=8, int8=None, hqq_axis=1):
    "A candidate: 4-bit body algorithm/block/zero points, the output projection's bits (None: fp32), extra nodes at 8 bits."
    return dict(body=body, block=block, sym=sym, head=head, int8=int8, hqq_axis=hqq_axis)

DEFAULT = 'minmax b32 + fitted o_proj/gate_up, 8-bit head in asymmetric blocks of 64 (convchat default)'
PREVIOUS = 'minmax b32 + fitted o_proj/gate_up, symmetric 8-bit head in blocks of 32 (previous default)'
O8 = 'minmax b32 + fitted o_proj/gate_up with int8 inputs, 8-bit head in asymmetric blocks of 64'
EXACT = 'minmax b32 exact, symmetric 8-bit head in blocks of 32'
FITTED_ALL = 'fitted integer grids everywhere (no offsets), symmetric 8-bit head in blocks of 32'
_FIT = dict(o_proj=0.0, gate_up_proj=0.2)
# builds of `convchat.fuse.build_fused(bits=4, args=...)`: the default (`INT4_BUILD`), the previous default, o_proj with int8
# inputs, every linear exact, every linear fitted
BUILD_FUSED = {DEFAULT: None, PREVIOUS: dict(algo='minmax', block_size=32, fit=_FIT, fp32_inputs=['o_proj']),
               O8: dict(algo='minmax', block_size=32, fit=_FIT, head_block=64), EXACT: dict(algo='minmax', block_size=32),
               FITTED_ALL: dict(algo='minmax', block_size=32, fit={p: 0.0 for p in ('qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj')})}
VARIANTS = {   # 'build_fused': convchat's own 4-bit builds (BUILD_FUSED); the others: ONNX Runtime's quantizer on the fp32 graph
    **{n: 'build_fused' for n in BUILD_FUSED},
    'rtn b32 asym, 8-bit head': cand(),
    'rtn b32 asym, 4-bit head': cand(head=4),
    'rtn b16 asym, 8-bit head': cand(block=16),
    'rtn b32 asym, 8-bit head + mixed': cand(int8=MIXED),
    'hqq b32, 8-bit head': cand(body='hqq'),
}
SLOW = {'hqq b32, 8-bit head'}   # float zero points: ONNX Runtime runs them on its fp32 path (~10x slower), so no free-running probes
INT8 = 'int8 (convert default)'
INT8_32 = 'int8 blocks of 32 (convert: when blocks of 64 fail the gate)'
EIGHTS = [INT8, INT8_32]   # `fuse.INT8_BUILDS`: convert keeps the first that passes the gate on the CPU

def convert_8bit(gates:dict)->str:
    "The 8-bit build `convchat convert` writes under one mode's gates: the first of `EIGHTS` that passes."
    return next((n for n in EIGHTS if gates.get(n, {}).get('passed')), INT8)

def slug(name): return ''.join(c if c.isalnum() else '-' for c in name.split(' (')[0]).strip('-')

def mixed_nodes(n_layers:int)->list[str]:
    "The MatMuls llama.cpp's mixed strategy keeps at higher precision (onnxruntime-genai's `mixed_layers` selection)."
    ls = [i for i in range(n_layers) if i < n_layers/8 or i >= 7*n_layers/8 or (i - round(n_layers/8)) % 3 == 2]
    return [f'/model/layers.{i}/{p}/MatMul' for i in ls for p in ('attn/qkv_proj', 'mlp/down_proj')]

def _quantize(model, bits, c, only=None):
    "One MatMulNBitsQuantizer pass over the float MatMuls (`only` these names, when given)."
    from onnxruntime.quantization import matmul_nbits_quantizer as mq
    mm = [n.name for n in model.graph.node if n.op_type == 'MatMul']
    skip = [n for n in mm if only is not None and n not in only]
    if bits == 4 and c['body'] == 'hqq': algo = mq.HQQWeightOnlyQuantConfig(block_size=c['block'], bits=4, axis=c['hqq_axis'])
    elif bits == 4 and c['body'] in ('rtn', 'k_quant'):
        cls = mq.RTNWeightOnlyQuantConfig if c['body'] == 'rtn' else mq.KQuantWeightOnlyQuantConfig
        algo = cls(customized_weight_config={n: dict(group_size=c['block'], scheme='sym' if c['sym'] else 'asym') for n in mm})
    else: algo = None
    block, sym = (c['block'], c['sym']) if bits == 4 else (64, False)      # 8-bit nodes: the 8-bit default build's blocks
    q = mq.MatMulNBitsQuantizer(model, bits=bits, block_size=block, is_symmetric=sym, accuracy_level=4,
                                nodes_to_exclude=skip, algo_config=algo)
    q.process()
    return q.model.model

def quantize(fp32:Path, dest:Path, c:dict):
    "Write candidate `c` of the fused fp32 graph in `fp32` to the folder `dest`."
    import onnx, logging
    logging.disable(logging.INFO)
    from onnx import helper
    m = onnx.load(str(fp32/'model.onnx'))
    n_layers = sum(n.op_type == 'GroupQueryAttention' for n in m.graph.node)
    eight = (['/lm_head/MatMul'] if c['head'] == 8 else []) + (mixed_nodes(n_layers) if c['int8'] == MIXED else list(c['int8'] or []))
    if eight: m = _quantize(m, 8, c, eight)
    rest = [n.name for n in m.graph.node if n.op_type == 'MatMul' and not (c['head'] is None and n.name == '/lm_head/MatMul')]
    m = _quantize(m, 4, c, rest)
    for n in m.graph.node:                      # HQQ writes no accuracy_level: give every MatMulNBits the int8-activation kernel
        if n.op_type == 'MatMulNBits' and not any(a.name == 'accuracy_level' for a in n.attribute):
            n.attribute.append(helper.make_attribute('accuracy_level', 4))
    if dest.exists(): shutil.rmtree(dest)
    shutil.copytree(fp32, dest, ignore=shutil.ignore_patterns('model.onnx*'))
    onnx.save(m, str(dest/'model.onnx'), save_as_external_data=True, location='model.onnx.data')
    meta = json.loads((dest/'convchat-onnx.json').read_text()); meta.update(bits=4, build=c)
    (dest/'convchat-onnx.json').write_text(json.dumps(meta))

def build(work:Path, names):
    "Build the fp32 reference, the 8-bit default and each named candidate that is not built yet (keyed by its options)."
    from convchat.fuse import build_fused, INT8_BUILDS, INT4_BUILD
    from convchat.models import default_model_path
    done = {}
    def fresh(d, key): return not (d/'study.json').exists() or json.loads((d/'study.json').read_text()) != key
    fixed = {'fp32': (None, None), INT8: (8, INT8_BUILDS[0]), INT8_32: (8, INT8_BUILDS[1]),
             **{n: (4, a or INT4_BUILD) for n, a in BUILD_FUSED.items()},
             'builder k_quant_mixed (previous int4 default)': (4, ['-p', 'int4', '--extra_options', 'algo_config=k_quant_mixed'])}
    for n in ['fp32'] + EIGHTS + names:
        d, t = work/slug(n), time.perf_counter()
        if n in fixed:
            if not fresh(d, list(fixed[n])): continue
            build_fused(default_model_path(), d, bits=fixed[n][0], args=fixed[n][1], overwrite=True); key = list(fixed[n])
        else:
            if not fresh(d, VARIANTS[n]): continue
            quantize(work/'fp32', d, VARIANTS[n]); key = VARIANTS[n]
        (d/'study.json').write_text(json.dumps(key))
        done[n] = round(time.perf_counter()-t, 1); print(f'built {n} in {done[n]} s', file=sys.stderr)
    return done

# ---- one process: gate or speed (run natively or under the CPUID mask) ---------------------------------------------
def gate_one(cand_dir:str, ref_dir:str, threads:int, free_run:bool=True):
    "The 8-bit gate of `cand_dir` against `ref_dir` (teacher-forced, then free-running if that passed), as JSON."
    from transformers import AutoTokenizer
    from convchat.verify import quality_gate, free_run_check, gate_token_ids, GATES
    tok = AutoTokenizer.from_pretrained(ref_dir)
    f, ref = Path(cand_dir)/'model.onnx', Path(ref_dir)/'model.onnx'
    rep = quality_gate(f, ref, gate_token_ids(tok), 4, GATES[8], threads)
    if rep.passed and free_run: rep.free_run = free_run_check(f, ref, tok, threads=threads)
    print(json.dumps(dict(rep.to_dict(), summary=str(rep))))

def child(args, mode, work, timeout=None):
    from int8_study import env_for
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env_for(mode, work), timeout=timeout)
    if p.returncode: raise RuntimeError(f'{args} ({mode}) failed:\n{p.stderr[-2000:]}')
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith('{')]

def gate(work, n, mode, threads):
    "Gate result of variant `n` under `mode`, cached next to its graph."
    d = work/slug(n); f = d/f'gate-{mode}.json'
    key = json.loads((d/'study.json').read_text())
    if f.exists() and json.loads(f.read_text())['key'] == key: return json.loads(f.read_text())['gate']
    t = time.perf_counter()
    g = child(['--gate-one', str(d), '--ref', str(work/'fp32'), '--threads', str(threads)] + (['--no-free-run'] if n in SLOW else []), mode, work)[0]
    f.write_text(json.dumps(dict(key=key, gate=g)))
    print(f"gated {n} ({mode}, {time.perf_counter()-t:.0f} s): {g['summary']}", file=sys.stderr)
    return g

def weight_bytes(d:Path)->int:
    "Bytes of weights a decode step reads: the constant inputs of every MatMul and MatMulNBits (not the embedding table)."
    import onnx
    m = onnx.load(str(d/'model.onnx'), load_external_data=False)
    inits = {t.name: t for t in m.graph.initializer}
    names = {i for n in m.graph.node if n.op_type in ('MatMul', 'MatMulNBits') for i in n.input if i in inits}
    def size(t):
        loc = {e.key: e.value for e in t.external_data}
        if 'length' in loc: return int(loc['length'])
        from onnx import numpy_helper
        return numpy_helper.to_array(t).nbytes
    return sum(size(inits[n]) for n in names)

def ab_speed(dirs:list, rounds:int=3, tokens:int=96, threads:int=2)->dict:
    "Decode tok/s of the graphs in `dirs`, loaded in one process and interleaved over `rounds` (ratios robust to load)."
    from convchat.runtime import ChatModel
    msgs = [{'role': 'user', 'content': SPEED_Q}]
    ms = {d: ChatModel(d, threads=threads) for d in dirs}
    for m in ms.values(): m.eos_ids = []; m.generate(msgs, max_new_tokens=4)
    res = {d: [] for d in dirs}
    for r in range(rounds):
        for d, m in ms.items(): res[d].append(m.generate(msgs, max_new_tokens=tokens).decode_tokens_per_s)
        print(f'round {r} load {os.getloadavg()[0]:.1f}: ' + ', '.join(f'{Path(d).name} {v[-1]:.1f}' for d, v in res.items()), file=sys.stderr)
    b = dirs[0]
    return {d: dict(decode_tok_s=statistics.median(v), x_first=statistics.median(x/y for x, y in zip(v, res[b])), rounds=v)
            for d, v in res.items()}

def ab_result(dirs:list, rounds:int, tokens:int, threads:int, modes=('native', 'avx2'))->Path:
    "`ab_speed` natively and under the AVX2 mask, as ratios to the 8-bit graph convert writes under each (results/int4_study_ab)."
    work = Path(dirs[0]).parent
    names = {slug(n): n for n in [INT8, INT8_32, *VARIANTS]}
    def gates(m): return {names.get(Path(d).name, Path(d).name): json.loads(f.read_text())['gate']
                          for d in dirs if (f := Path(d)/f'gate-{m}.json').exists()}
    out, base, load = {}, {}, {}
    for m in modes:
        r = child(['--ab', *dirs, '--reps', str(rounds), '--tokens', str(tokens), '--threads', str(threads)], m, work)[0]
        base[m] = convert_8bit(gates(m)); b = r[str(work/slug(base[m]))]['rounds']
        out[m] = {names.get(Path(d).name, Path(d).name): dict(tok_s=v['decode_tok_s'], x=statistics.median(x/y for x, y in zip(v['rounds'], b)),
                                                              rounds=v['rounds']) for d, v in r.items()}
        load[m] = os.getloadavg()[0]
    rows = [dict(name=n, **{f'{m}_{k}': out[m][n][k] for m in modes for k in ('tok_s', 'x')}) for n in out[modes[0]]]
    cols = [column('name', 'graph')] + [c for m in modes for c in (column(f'{m}_tok_s', f'decode tok/s {m}', '{:.1f}'),
                                                                     column(f'{m}_x', f'x 8-bit {m}', '{:.2f}', True))]
    return write_result('int4_study_ab', dict(
        title="4-bit builds against convert's 8-bit graph: decode speed, the graphs loaded in one process and interleaved",
        machine=machine_info(threads), settings=dict(rounds=rounds, tokens=tokens, threads=threads, load_after=load), baseline=base,
        results=out, reproduce=f"python benchmarks/int4_study.py --ab-result --ab {' '.join(dirs)} --reps {rounds} --tokens {tokens}",
        intro=(f"The graphs below loaded in one process and interleaved: greedy decode of {tokens} tokens after a chat prompt, {rounds} "
               "rounds, median tokens/s; x 8-bit = the median of each round's ratio to the 8-bit graph `convchat convert` writes on that "
               "CPU kind (the first of `fuse.INT8_BUILDS` that passes the gate there: " + '; '.join(f'{m}: {n}' for m, n in base.items()) +
               "). Natively and under the AVX2 CPUID mask of benchmarks/int8_study.py, each under the exclusive benchmark lock."),
        tables=[dict(columns=cols, rows=rows)],
        notes=['Per-round figures: results in the JSON.', 'What the exact 4-bit grid costs: benchmarks/results/int4_limits.md.']))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--work', default='/tmp/convchat-int4-study')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--tokens', type=int, default=128, help='tokens per speed run')
    ap.add_argument('--reps', type=int, default=3, help='interleaved speed rounds')
    ap.add_argument('--only', nargs='*', default=None, help='variants to run (default: all)')
    ap.add_argument('--modes', nargs='*', default=['native', 'avx2'])
    ap.add_argument('--speed', nargs='*', default=None, help='variants to time (default: those that pass the gate on every mode)')
    ap.add_argument('--no-speed', action='store_true')
    ap.add_argument('--avx2-gates', nargs='*', default=None, help='builds gated under the AVX2 mask (default: all)')
    ap.add_argument('--gate-one', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--ref', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--no-free-run', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--speed-one', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--ab', nargs='*', default=None, help='graph folders to time in one process, interleaved (the first is the baseline)')
    ap.add_argument('--ab-result', action='store_true', help="--ab natively and under the AVX2 mask, written to results/int4_study_ab")
    a = ap.parse_args()
    if a.gate_one: return gate_one(a.gate_one, a.ref, a.threads, not a.no_free_run)
    if a.ab and a.ab_result: return print(ab_result(a.ab, a.reps, a.tokens, a.threads).read_text(), file=sys.stderr)
    if a.ab: return print(json.dumps(ab_speed(a.ab, a.reps, a.tokens, a.threads)))
    if a.speed_one:
        from int8_study import speed_one
        return speed_one(a.speed_one, a.tokens, a.threads)
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    names = a.only or list(VARIANTS)
    built = build(work, names)
    gated = {m: EIGHTS + names if m != 'avx2' or a.avx2_gates is None else EIGHTS + a.avx2_gates for m in a.modes}
    gates = {mode: {n: gate(work, n, mode, a.threads) for n in gated[mode]} for mode in a.modes}
    for m in a.modes: print(m + ': ' + ', '.join(f"{n} {'PASS' if g['passed'] else 'fail'}" for n, g in gates[m].items()), file=sys.stderr)
    timed = [] if a.no_speed else (a.speed if a.speed is not None else [n for n in names if n not in SLOW])
    rounds = {m: [] for m in a.modes}
    for r in range(a.reps if timed else 0):
        for mode in a.modes:
            row = {n: child(['--speed-one', str(work/slug(n)), '--tokens', str(a.tokens), '--threads', str(a.threads)], mode, work)[0]['decode_tok_s']
                   for n in EIGHTS + timed}
            rounds[mode].append(row); print(f'round {r+1} {mode} (load {os.getloadavg()[0]:.1f}): ' + ', '.join(f'{k} {v:.1f}' for k, v in row.items()), file=sys.stderr)
    base = {m: convert_8bit(gates[m]) for m in a.modes}
    speed = {m: {n: dict(decode_tok_s=statistics.median(rw[n] for rw in rs), x_int8=statistics.median(rw[n]/rw[base[m]] for rw in rs))
                 for n in rs[0]} for m, rs in rounds.items() if rs}
    res = dict(machine=machine_info(a.threads), settings=dict(threads=a.threads, tokens=a.tokens, reps=a.reps, modes=a.modes, gated=gated),
               baseline=base,
               variants={n: VARIANTS[n] for n in names}, build_seconds=built, gates=gates, speed=speed, speed_rounds=rounds,
               weight_bytes={n: weight_bytes(work/slug(n)) for n in EIGHTS + ['fp32'] + names if (work/slug(n)/'model.onnx').exists()})
    print(write_result('int4_study', report(res)).read_text(), file=sys.stderr)

def _gate_cell(g)->str:
    if g is None: return ''
    fr = g.get('free_run')
    free = 'not run' if fr is None else f"{fr['n_prompts'] - len(fr['failures'])}/{fr['n_prompts']}"
    verdict = 'FAIL' if not g['passed'] else ('teacher-forced pass' if fr is None else 'pass')
    return f"{g['kl']:.4f} / {g['top1']:.1%} / {g['ppl_increase']:+.1%} / {free} ({verdict})"

COLUMNS = [column('variant', 'build'), column('weights', 'weight MB read a token'), column('gate_native', 'gate native: KL / top-1 / ppl / probes'),
           column('gate_avx2', 'gate AVX2: KL / top-1 / ppl / probes'), column('native', 'decode tok/s native (x 8-bit)'),
           column('avx2', 'decode tok/s AVX2 (x 8-bit)'), column('x_native', 'x 8-bit native', '{:.2f}', True)]

def report(res)->dict:
    "`res` with the title, intro, table and notes of the study"
    gs, sp, wb = res['gates'], res['speed'], res['weight_bytes']
    base = '; '.join(f"{m}: {n}" for m, n in res.get('baseline', {}).items()) or INT8
    def spd(m, n): return f"{sp[m][n]['decode_tok_s']:.1f} ({sp[m][n]['x_int8']:.2f})" if m in sp and n in sp[m] else ''
    rows = [dict(variant=n, weights=round(wb[n]/1e6, 1) if n in wb else None, gate_native=_gate_cell(gs.get('native', {}).get(n)),
                 gate_avx2=_gate_cell(gs.get('avx2', {}).get(n)), native=spd('native', n), avx2=spd('avx2', n),
                 x_native=sp['native'][n]['x_int8'] if 'native' in sp and n in sp['native'] else None) for n in EIGHTS + list(res['variants'])]
    return dict(res, title='4-bit builds of the default model: the 8-bit gate and decode speed, native and AVX2',
        reproduce='python benchmarks/int4_study.py', settings=res['settings'],
        intro=("SmolLM2-135M-Instruct (convchat's default, de-quantized from its Q4_1 GGUF). Every build is the fused graph "
               "(onnxruntime-genai's builder) with weight-only MatMulNBits at accuracy_level 4 (int8 activations). Gate: "
               "`verify.GATES[8]` limits (KL <= 0.05, top-1 >= 90%, perplexity within 5%) on the example conversations against "
               "the fused fp32 graph, then the free-running probes (passed/prompts; run only when the teacher-forced part passes). "
               "'AVX2' = the CPUID mask of benchmarks/int8_study.py (ONNX Runtime takes an AVX2-only CPU's kernels). Speed: "
               f"{res['settings']['tokens']} greedy tokens after a chat prompt, a fresh process per build, builds interleaved over "
               f"{res['settings']['reps']} rounds, median; x 8-bit = ratio, in the same round, to the 8-bit graph `convchat convert` "
               f"writes on that CPU kind (the first of its 8-bit builds that passes the gate there: {base}). Weight MB: bytes of "
               "the initializers a decode step reads (all but the embedding table, of which one row is read)."),
        tables=[dict(columns=COLUMNS, rows=rows)],
        notes=[f"{INT8}: `convchat convert`'s first 8-bit build (blocks of 64, asymmetric); {INT8_32}: its second. {EXACT}: every linear "
               "on its block of 32's own min/max grid: integer zero points, and the rest, a block offset times the block's input sum, from "
               "the block sums fed to the same MatMulNBits as extra inputs with the offsets as extra 4-bit weight rows (a MatMul and a "
               "Concat per input); the LM head in symmetric 8-bit blocks of 32. The default model's weights "
               "are Q4_1 (layers) and Q8_0 (head) in its GGUF file, so this build gives them back up to the offsets' 4-bit rounding. "
               f"{PREVIOUS}: the same, but the attention output projections of every layer "
               "and the gate/up projections of layers 6-23 (`fuse.FIT_LAYERS`) on a fitted integer grid without offset ops (per block, the "
               "integer zero point and scale that minimise the error weighted by the block's input second moments, the error's mean folded "
               "into the MatMulNBits bias), and the attention output projections at accuracy_level 0 (fp32 inputs); built before the "
               "block sums became extra inputs, its exact linears add a float MatMul of the offsets and an Add each (as measured then). "
               f"{DEFAULT} (`fuse.INT4_BUILD`): the previous default with the block sums as extra inputs and the LM head in asymmetric "
               f"8-bit blocks of 64, like the 8-bit default's (its largest node runs faster so). {O8} (`fuse.INT4_BUILDS[0]`, what "
               f"`convchat convert --bits 4` tries first): the attention output projections with "
               f"int8 inputs too (faster). In this study's gate (reference: the fused fp32 graph) the default and this build each fail "
               f"one free-running probe on one CPU kind or both (the table); convert's gate (reference: the plain export) kept this "
               f"build on both kinds (benchmarks/results/chat.md, chat_avx2.md). {FITTED_ALL}: every linear on the fitted grid (no exact linear).",
               "What the exact grid costs, and why it has to be exact: benchmarks/results/int4_limits.md.",
               "Calibration (`fuse.calibrate`): the input mean and block second moments of every linear over convchat's second conversation "
               "set (assets/ferry_conversations.json); the gate scores the example conversations. How FIT_LAYERS was chosen (teacher-forced "
               "KL added when one group's offsets are dropped, the rest exact, this machine natively): o_proj of all layers +0.005; qkv "
               "+0.075, gate_up +0.040, down_proj +0.080 (down_proj of layers 10-14 alone +0.046); per group of 5 layers gate_up +0.005 to "
               "+0.010, the first and last groups the most. Builds that passed teacher-forced but failed one free-running probe: gate/up "
               "fitted in layers 5-24 (native: o_proj int8 inputs, 'What language is spoken in Spain?' loops; AVX2 with o_proj fp32 inputs, "
               "the same prompt), o_proj alone (native, the cat story loops), gate/up fitted only in layers 10-19 (France, natively and "
               "AVX2). The probes are the fragile part of the gate; the default was picked as the build passing all of it on both kinds.",
               "rtn = ONNX Runtime's MatMulNBitsQuantizer (DEFAULT, round to nearest: the block's range stretched to include zero, "
               "integer zero point); k_quant = its k-quant; hqq = its HQQ (float zero points, which ONNX Runtime runs on its fp32 "
               "path); mixed = llama.cpp's mixed selection (qkv and down_proj of the first and last eighth and every third layer) "
               "at 8 bits. Rows not rerun here (rtn b16, 4-bit head, mixed, hqq) are in this file's git history (commit e639c31).",
               "The AVX2 speed column of the previous study (8-bit 22.5 tok/s against chat_avx2's 69.5) came from a run at load 8.6: "
               "quiet, the same graphs give 74 tok/s under the mask."])

if __name__ == '__main__': main()
