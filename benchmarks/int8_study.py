"""Which 8-bit build of the fused graph stays closest to fp32 when it talks freely, on an AVX-512 CPU and on an AVX2-only one?

    python benchmarks/int8_study.py [--work /tmp/convchat-int8-study] [--reps 3] [--only NAME ...] [--qemu N]

The teacher-forced gate (KL / top-1) passes every 8-bit build, yet on an AVX2-only AMD EPYC the shipped one answers
"What is the capital of France?" with a loop. ONNX Runtime picks its MatMulNBits kernels from CPUID, so this script
runs each graph twice on this machine: natively, and with CPUID faulting (`arch_prctl(ARCH_SET_CPUID)`, an LD_PRELOAD
built here with gcc) hiding AVX-512, AMX and AVX-VNNI so ONNX Runtime takes the kernels an AVX2-only CPU takes.
`--qemu N` also runs N probe prompts of the first variants under `qemu-x86_64 -cpu EPYC-Rome` (Debian's qemu-user,
TCG has AVX2 but no AVX-512) to check that the CPUID mask gives the same replies as an emulated EPYC (slow: minutes a prompt).

Each variant is built with `convchat.fuse.build_fused` (onnxruntime-genai's builder) from the builder args in
VARIANTS, then scored on convchat/assets/probe_prompts.json by free-running greedy decoding (48 new tokens,
`ChatModel.generate`): factual accuracy (reply contains an expected answer), agreement with the fp32 fused graph (same
reply tokens / same first 8 tokens / same verdict on the expected answer) and degenerate replies (a token 3-gram seen
4 or more times). Speed: decode tokens/s for 128 tokens in a fresh process per contender, contenders interleaved over
`--reps` rounds; ratios are to the fp32 fused graph and to PyTorch in the same round, natively and under the mask.

Results go to benchmarks/results/int8_study.json and int8_study.md.
"""
import argparse, json, os, platform, statistics, subprocess, sys, time, warnings
from pathlib import Path
from benchlib import column, machine_info, write_result
from convchat.core import cpu_info
from convchat.runtime import repeated_ngram

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent/'results'
PROBES = ROOT/'convchat'/'assets'/'probe_prompts.json'
SPEED_Q = "I am planning a trip to Paris next spring with my family. Can you suggest a three day itinerary with museums and parks?"
I8 = ['-p', 'int8', '--extra_options']
VARIANTS = {   # name: builder args (after -i/-o/-e cpu/-c); accuracy_level 4 = int8 activations, 1 = fp32 compute
    'fp32':                     ['-p', 'fp32'],
    'int8 asym b32 acc4 (shipped)': I8 + ['is_symmetric=false'],
    'int8 sym b32 acc4':        I8 + ['is_symmetric=true'],
    'int8 asym b64 acc4':       I8 + ['is_symmetric=false', 'block_size=64'],
    'int8 asym b128 acc4':      I8 + ['is_symmetric=false', 'block_size=128'],
    'int8 asym b32 acc4 fp32-head': I8 + ['is_symmetric=false', 'nodes_to_exclude=/lm_head/MatMul'],
    'int8 asym b32 acc1':       I8 + ['is_symmetric=false', 'accuracy_level=1'],
    'int8 sym b32 acc1':        I8 + ['is_symmetric=true', 'accuracy_level=1'],
    'int8 asym b128 acc1':      I8 + ['is_symmetric=false', 'accuracy_level=1', 'block_size=128'],
    'int4 k_quant_mixed (shipped int4)': ['-p', 'int4', '--extra_options', 'algo_config=k_quant_mixed'],
}
MASK_C = r'''
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <ucontext.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <cpuid.h>
#define ARCH_SET_CPUID 0x1012
static int amd;
static long setcpuid(int on){ return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }
static void handler(int sig, siginfo_t *si, void *ctx){   /* CPUID faulted: run it for real, then hide AVX-512/AMX/AVX-VNNI */
  ucontext_t *uc = ctx; greg_t *g = uc->uc_mcontext.gregs;
  unsigned char *ip = (unsigned char*)g[REG_RIP];
  if (ip[0] != 0x0f || ip[1] != 0xa2) { signal(SIGSEGV, SIG_DFL); return; }
  unsigned leaf = (unsigned)g[REG_RAX], sub = (unsigned)g[REG_RCX], a, b, c, d;
  setcpuid(1); __cpuid_count(leaf, sub, a, b, c, d); setcpuid(0);
  if (leaf == 7 && sub == 0) {
    b &= ~((1u<<16)|(1u<<17)|(1u<<21)|(1u<<26)|(1u<<27)|(1u<<28)|(1u<<30)|(1u<<31));
    c &= ~((1u<<1)|(1u<<6)|(1u<<11)|(1u<<12)|(1u<<14));
    d &= ~((1u<<2)|(1u<<3)|(1u<<8)|(1u<<22)|(1u<<23)|(1u<<24)|(1u<<25));
  }
  if (leaf == 7 && sub == 1) a &= ~((1u<<4)|(1u<<5));
  if (leaf == 0xd && sub == 0) a &= ~(0xe0u|(3u<<17));
  if (leaf == 0 && amd) { b = 0x68747541; d = 0x69746e65; c = 0x444d4163; }
  g[REG_RAX] = a; g[REG_RBX] = b; g[REG_RCX] = c; g[REG_RDX] = d; g[REG_RIP] += 2;
}
__attribute__((constructor)) static void init(void){
  amd = getenv("CPUIDMASK_AMD") != NULL;
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, NULL);
  if (setcpuid(0) != 0) { write(2, "cpuidmask: CPUID faulting unavailable\n", 38); _exit(3); }
}
'''

def mask_lib(work):
    so = work/'cpuidmask.so'
    if not so.exists():
        (work/'cpuidmask.c').write_text(MASK_C)
        subprocess.run(['gcc', '-O2', '-shared', '-fPIC', '-o', str(so), str(work/'cpuidmask.c')], check=True)
    return so

def env_for(mode, work):
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    if mode == 'avx2': env['LD_PRELOAD'] = str(mask_lib(work))
    return env

def slug(name): return name.split(' (')[0].replace(' ', '-')

# ---- building ------------------------------------------------------------------------------------------------------
def build(work, names):
    from convchat.fuse import build_fused
    from convchat.models import default_model_path
    out = {}
    for n in names:
        d = work/slug(n); meta = d/'convchat-onnx.json'
        if meta.exists() and json.loads(meta.read_text()).get('build') == VARIANTS[n]: continue
        bits = {'fp32': None, 'int8': 8, 'int4': 4}[VARIANTS[n][1]]   # builder args are ['-p', precision, ...]
        t = time.perf_counter(); build_fused(default_model_path(), d, bits=bits, args=VARIANTS[n], overwrite=True)
        out[n] = round(time.perf_counter()-t, 1); print(f'built {n} in {out[n]}s', file=sys.stderr)
    return out

# ---- one process: replies or speed --------------------------------------------------------------------------------
def probe_one(d, n_prompts, max_new):
    "Greedy replies of the graph in `d` to the probe prompts (JSON list on stdout)."
    from convchat.runtime import ChatModel
    m = ChatModel(d, threads=int(os.environ.get('STUDY_THREADS', '2')))
    res, t0, budget = [], time.perf_counter(), float(os.environ.get('STUDY_PROBE_BUDGET', 'inf'))
    for p in json.loads(PROBES.read_text())[:n_prompts]:
        if time.perf_counter()-t0 > budget: break                # too slow (e.g. an fp32-compute kernel on AVX2): score what ran
        g = m.generate([{'role':'user', 'content':p['prompt']}], max_new_tokens=max_new)
        res.append(dict(text=g.text, tokens=g.token_ids))
        print(json.dumps(res[-1]), flush=True)

def speed_one(d, tokens, threads):
    warnings.filterwarnings('ignore')
    msgs = [{'role':'user', 'content':SPEED_Q}]
    if d == 'pytorch':
        import torch
        from convchat.models import load_model
        torch.set_num_threads(threads)
        m, tok = load_model('default')
        x = torch.tensor([tok.apply_chat_template(msgs, add_generation_prompt=True)])
        kw = dict(attention_mask=torch.ones_like(x), do_sample=False, pad_token_id=0)
        with torch.inference_mode():
            m.generate(x, max_new_tokens=4, min_new_tokens=4, **kw)
            t = time.perf_counter(); m.generate(x, max_new_tokens=1, min_new_tokens=1, **kw); ttft = time.perf_counter()-t
            t = time.perf_counter(); m.generate(x, max_new_tokens=tokens, min_new_tokens=tokens, **kw); total = time.perf_counter()-t
        print(json.dumps(dict(decode_tok_s=(tokens-1)/(total-ttft)))); return
    from convchat.runtime import ChatModel
    m = ChatModel(d, threads=threads); m.eos_ids = []
    w = m.generate(msgs, max_new_tokens=4)
    if w.total_s-w.ttft_s > 3*0.5: tokens = min(tokens, 16)      # over 0.5 s a token (fp32 compute of 8-bit weights on AVX2): fewer tokens
    g = m.generate(msgs, max_new_tokens=tokens)
    print(json.dumps(dict(decode_tok_s=g.decode_tokens_per_s)))

def child(args, mode, work, qemu=False, timeout=None):
    cmd = [sys.executable, __file__, *args]
    if qemu: cmd = ['qemu-x86_64', '-cpu', 'EPYC-Rome', str(ROOT/'.venv'/'bin'/'python'), __file__, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env_for('native' if qemu else mode, work), timeout=timeout)
    if p.returncode: raise RuntimeError(f'{args} ({mode}) failed:\n{p.stderr[-2000:]}')
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith('{')]

def probe(work, n, mode, max_new):
    "Replies of variant `n` under `mode`, cached next to its graph (keyed by its builder args)."
    f = work/slug(n)/f'replies-{mode}-{max_new}.json'
    if f.exists() and json.loads(f.read_text())['args'] == VARIANTS[n]: return json.loads(f.read_text())['replies']
    r = child(['--probe-one', str(work/slug(n)), '--max-new', str(max_new)], mode, work)
    f.write_text(json.dumps(dict(args=VARIANTS[n], replies=r))); print(f'probed {n} ({mode})', file=sys.stderr)
    return r

# ---- scoring -------------------------------------------------------------------------------------------------------
def degenerate(toks, n=3, k=4):
    "A reply that loops: some token n-gram occurs k or more times."
    return repeated_ngram(toks, n, k) is not None

def hit(text, expect): return any(e.lower() in text.lower() for e in expect)

def score(replies, ref, probes):
    fact = [i for i, p in enumerate(probes[:len(replies)]) if p['expect']]      # replies may cover only the first prompts
    return dict(
        factual=sum(hit(replies[i]['text'], probes[i]['expect']) for i in fact), n_factual=len(fact),
        same_reply=sum(r['tokens'] == f['tokens'] for r, f in zip(replies, ref)),
        same_first8=sum(r['tokens'][:8] == f['tokens'][:8] for r, f in zip(replies, ref)),
        same_verdict=sum(hit(replies[i]['text'], probes[i]['expect']) == hit(ref[i]['text'], probes[i]['expect']) for i in fact),
        degenerate=sum(degenerate(r['tokens']) for r in replies), n=len(replies))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--work', default='/tmp/convchat-int8-study')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--tokens', type=int, default=128, help='tokens per speed run')
    ap.add_argument('--max-new', type=int, default=48, help='tokens per probe reply')
    ap.add_argument('--reps', type=int, default=3, help='interleaved speed rounds')
    ap.add_argument('--only', nargs='*', default=None, help='variants to run (default: all)')
    ap.add_argument('--probe-budget', type=float, default=None, help='seconds per variant and CPU kind for the probe prompts; a slower one is scored on the prompts it finished')
    ap.add_argument('--qemu', type=int, default=0, help='probe prompts to also run under qemu EPYC-Rome (first variants only)')
    ap.add_argument('--qemu-variants', nargs='*', default=['int8 asym b32 acc4 (shipped)'])
    ap.add_argument('--probe-one', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--speed-one', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--n-prompts', type=int, default=100, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.probe_one: return probe_one(a.probe_one, a.n_prompts, a.max_new)
    if a.speed_one: return speed_one(a.speed_one, a.tokens, a.threads)
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    names = a.only or list(VARIANTS)
    if 'fp32' not in names: names = ['fp32'] + names
    print(f"CPU: {cpu_info(a.threads)}", file=sys.stderr)
    built = build(work, names)
    probes = json.loads(PROBES.read_text())
    os.environ['STUDY_THREADS'] = str(a.threads)
    if a.probe_budget: os.environ['STUDY_PROBE_BUDGET'] = str(a.probe_budget)
    replies = {mode: {n: probe(work, n, mode, a.max_new) for n in names} for mode in ('native', 'avx2')}
    ref = replies['native']['fp32']
    scores = {mode: {n: score(r, ref, probes) for n, r in rs.items()} for mode, rs in replies.items()}
    for n in names: print(f"{n:34s} native {scores['native'][n]}\n{'':34s} avx2   {scores['avx2'][n]}", file=sys.stderr)
    qemu = {}
    for n in (a.qemu_variants if a.qemu else []):
        t = time.perf_counter()
        q = child(['--probe-one', str(work/slug(n)), '--max-new', str(a.max_new), '--n-prompts', str(a.qemu)], 'native', work, qemu=True)
        qemu[n] = dict(replies=q, seconds=round(time.perf_counter()-t), same_as_avx2_mask=[x['tokens'] == y['tokens'] for x, y in zip(q, replies['avx2'][n])])
        print(f"qemu {n}: same as the CPUID mask on {sum(qemu[n]['same_as_avx2_mask'])}/{len(q)} prompts", file=sys.stderr)
    rounds = {'native': [], 'avx2': []}
    contenders = ['pytorch'] + names
    for r in range(a.reps):
        for mode in ('native', 'avx2'):
            row = {}
            for n in contenders:
                if mode == 'avx2' and n == 'pytorch': continue
                d = 'pytorch' if n == 'pytorch' else str(work/slug(n))
                row[n] = child(['--speed-one', d, '--tokens', str(a.tokens), '--threads', str(a.threads)], mode, work)[0]['decode_tok_s']
            rounds[mode].append(row); print(f'round {r+1} {mode}: ' + ', '.join(f'{k} {v:.1f}' for k, v in row.items()), file=sys.stderr)
    speed = {}
    for mode, rs in rounds.items():
        speed[mode] = {n: dict(decode_tok_s=statistics.median(rw[n] for rw in rs), x_fp32=statistics.median(rw[n]/rw['fp32'] for rw in rs),
                               x_pytorch=statistics.median(rw[n]/rw['pytorch'] for rw in rs) if 'pytorch' in rs[0] else None)
                       for n in rs[0]}
    res = dict(machine=machine_info(a.threads), threads=a.threads, max_new_tokens=a.max_new, speed_tokens=a.tokens, reps=a.reps, load_avg=os.getloadavg(),
               variants={n: VARIANTS[n] for n in names}, build_seconds=built, scores=scores, speed=speed, speed_rounds=rounds,
               qemu=qemu, replies=replies)
    print(write_result('int8_study', report(res, probes)).read_text(), file=sys.stderr)

def qemu_note(res):
    if not res['qemu']: return ''
    parts = [f"{k}: {sum(v['same_as_avx2_mask'])}/{len(v['same_as_avx2_mask'])} prompts identical" for k, v in res['qemu'].items()]
    return ' (checked against qemu-x86_64 -cpu EPYC-Rome: ' + '; '.join(parts) + ')'

INT8_COLUMNS = [column('variant', 'variant'), column('args', 'builder args'), column('factual', 'factual native / AVX2'),
                column('same_reply', '= fp32 reply native / AVX2'), column('same_first8', 'same first 8 tokens native / AVX2'),
                column('degenerate', 'degenerate native / AVX2'), column('x_fp32', 'x fp32 speed native / AVX2'),
                column('x_pytorch', 'x PyTorch native', '{:.2f}', True)]

def report(res, probes)->dict:
    "`res` with the title, intro, machine, table and notes of the study"
    sn, sa, sp = res['scores']['native'], res['scores']['avx2'], res['speed']
    nf = sn['fp32']['n_factual']; n = sn['fp32']['n']
    f = lambda k, tot: lambda v: f"{sn[v][k]}/{sn[v][tot]} / {sa[v][k]}/{sa[v][tot]}"
    rows = [dict(variant=v, args=f"`{' '.join(res['variants'][v])}`", factual=f('factual', 'n_factual')(v), same_reply=f('same_reply', 'n')(v),
                 same_first8=f('same_first8', 'n')(v), degenerate=f('degenerate', 'n')(v),
                 x_fp32=f"{sp['native'][v]['x_fp32']:.2f} / {sp['avx2'][v]['x_fp32']:.2f}", x_pytorch=sp['native'][v]['x_pytorch']) for v in sn]
    return dict(res, title='8-bit fused graph: free-running agreement with fp32 on AVX-512 and AVX2', reproduce='python benchmarks/int8_study.py',
        machine=dict(res['machine'], load_avg=round(res['load_avg'][0], 2), note='shared'),
        intro=("'AVX2' = the same CPU with AVX-512, AMX and AVX-VNNI hidden from CPUID, so ONNX Runtime picks an AVX2-only EPYC's kernels"
               + qemu_note(res) + f". {n} probe prompts ({nf} factual), greedy, {res['max_new_tokens']} new tokens. Agreement = identical reply "
               "tokens to the fp32 fused graph run natively. Degenerate = a token 3-gram repeated 4+ times. Speed: decode tok/s over "
               f"{res['speed_tokens']} tokens, median of {res['reps']} interleaved rounds, as ratios in the same round."),
        tables=[dict(columns=INT8_COLUMNS, rows=rows)],
        notes=[f"PyTorch fp32 decode: {sp['native']['pytorch']['decode_tok_s']:.1f} tok/s natively (median). fp32 fused graph: "
               f"{sp['native']['fp32']['decode_tok_s']:.1f} tok/s native, {sp['avx2']['fp32']['decode_tok_s']:.1f} tok/s AVX2."]
              + [f"Reply to \"What is the capital of France?\" from {v}: native {res['replies']['native'][v][0]['text'][:90]!r}; "
                 f"AVX2 {res['replies']['avx2'][v][0]['text'][:90]!r}" for v in sn])

if __name__ == '__main__': main()
