"""Chat decode speed: convchat's ONNX Runtime chat against PyTorch `generate` and Optimum `ORTModelForCausalLM`, side by side.

    python benchmarks/chat_bench.py [--threads 2] [--tokens 128] [--reps 3] [--work /tmp/convchat-chat-bench] [--int8-args "..."]

`--int8-args` replaces the builder args of the fused 8-bit graph (`convchat.optimize.PRECISIONS['int8']`) for this run,
e.g. `--int8-args "-p int8 --extra_options is_symmetric=false accuracy_level=1"`; the folder is rebuilt when they change.

Model: the default SmolLM2-135M-Instruct. Prompt: one chat message rendered with the model's template (56 tokens).
Each contender generates exactly `--tokens` greedy tokens (end-of-turn ignored) on `--threads` threads, in its own
fresh process, so its load time and peak memory (max RSS of the process) are its own. Contenders run interleaved,
`--reps` rounds, because this machine's CPU is shared: report ratios to PyTorch within a round, and the median round.

Contenders:
  pytorch-fp32            transformers `generate` on the fp32 model
  optimum-fp32            Optimum `ORTModelForCausalLM` on convchat's verified Optimum export
  convchat-optimum-fp32   convchat's loop (`ChatModel`) on the same Optimum export
  convchat-optimum-int8   convchat's loop on convert's block-wise 8-bit MatMulNBits version of that (unfused) graph
  convchat-fused-fp32     convchat's loop on the fused graph (`convchat.optimize.build_fused_model`)
  convchat-fused-int8     the same, 8-bit
  convchat-fused-int4     the same, 4-bit (k_quant_mixed)
  genai-fused-int8        onnxruntime-genai's runtime driven directly on the fused 8-bit folder (what ChatModel adds)

Results go to benchmarks/results/chat.json and chat.md.
"""
import argparse, json, os, platform, resource, statistics, subprocess, sys, time, warnings
from pathlib import Path

RESULTS = Path(__file__).parent/'results'
QUESTION = "I am planning a trip to Paris next spring with my family. Can you suggest a three day itinerary with museums and parks?"

def _ids(model_dir):
    from convchat.runtime import ChatModel
    m = ChatModel(model_dir, threads=1)
    return m.encode([{'role':'user', 'content':QUESTION}])

def _peak_rss_mb():
    "This process's peak resident memory (VmHWM; unlike ru_maxrss it is not inherited from the parent across exec)."
    for l in Path('/proc/self/status').read_text().splitlines():
        if l.startswith('VmHWM:'): return int(l.split()[1])/1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024

# ---- one contender, in its own process ----------------------------------------------------------------------------
def run_one(name, work, threads, tokens):
    warnings.filterwarnings('ignore')
    os.environ.setdefault('OMP_NUM_THREADS', str(threads))
    work = Path(work)
    t0 = time.perf_counter()
    if name.startswith('convchat-'):
        from convchat.runtime import ChatModel
        d = {'convchat-optimum-fp32': work/'optimum', 'convchat-optimum-int8': work/'optimum-int8',
             'convchat-fused-fp32': work/'fused-fp32', 'convchat-fused-int8': work/'fused-int8', 'convchat-fused-int4': work/'fused-int4'}[name]
        m = ChatModel(d, threads=threads); m.eos_ids = []               # exactly `tokens` tokens (genai: max_length)
        load = time.perf_counter()-t0
        ids = m.encode([{'role':'user', 'content':QUESTION}])
        text = m.prompt_text([{'role':'user', 'content':QUESTION}])
        m.generate(text, max_new_tokens=4)                               # warm-up
        g = m.generate(text, max_new_tokens=tokens)
        out = dict(ttft_s=g.ttft_s, total_s=g.total_s, n=g.completion_tokens, tokens=g.token_ids)
    elif name.startswith('genai-'):
        import onnxruntime_genai as og
        cfg = og.Config(str(work/'fused-int8'))
        m = og.Model(cfg); load = time.perf_counter()-t0
        ids = _ids(work/'fused-int8')
        def gen(n):
            p = og.GeneratorParams(m); p.set_search_options(max_length=len(ids)+n, min_length=len(ids)+n, do_sample=False)
            g = og.Generator(m, p); t = time.perf_counter(); g.append_tokens([ids]); toks, ttft = [], None
            while not g.is_done():
                g.generate_next_token(); toks.append(int(g.get_next_tokens()[0]))
                if ttft is None: ttft = time.perf_counter()-t
            return toks, ttft, time.perf_counter()-t
        gen(4); toks, ttft, total = gen(tokens)
        out = dict(ttft_s=ttft, total_s=total, n=len(toks), tokens=toks)
    else:
        import torch
        torch.set_num_threads(threads)
        ids = _ids(work/'optimum')
        if name == 'pytorch-fp32':
            from convchat.models import load_model
            m, tok = load_model('default')
        else:
            import onnxruntime as ort
            from optimum.onnxruntime import ORTModelForCausalLM
            so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
            m = ORTModelForCausalLM.from_pretrained(work/'optimum', file_name='model.onnx', session_options=so, use_cache=True)
        load = time.perf_counter()-t0
        x = torch.tensor([ids])
        kw = dict(attention_mask=torch.ones_like(x), do_sample=False, pad_token_id=0)
        with torch.inference_mode():
            m.generate(x, max_new_tokens=4, min_new_tokens=4, **kw)
            t = time.perf_counter(); m.generate(x, max_new_tokens=1, min_new_tokens=1, **kw); ttft = time.perf_counter()-t
            t = time.perf_counter(); y = m.generate(x, max_new_tokens=tokens, min_new_tokens=tokens, **kw); total = time.perf_counter()-t
        out = dict(ttft_s=ttft, total_s=total, n=y.shape[1]-x.shape[1], tokens=y[0, x.shape[1]:].tolist())
    out.update(name=name, load_s=load, prompt_tokens=len(ids), peak_rss_mb=_peak_rss_mb(),
               decode_tok_s=(out['n']-1)/(out['total_s']-out['ttft_s']))
    print(json.dumps(out))

# ---- building the model folders once ------------------------------------------------------------------------------
def build(work, threads):
    from convchat.convert import export_onnx
    from convchat.optimize import build_fused_model
    work.mkdir(parents=True, exist_ok=True)
    steps = {}
    if not (work/'optimum'/'model.onnx').exists():
        t = time.perf_counter(); export_onnx('default', work/'optimum', verify=False, overwrite=True, progress=False, threads=threads)
        steps['optimum export (fp32)'] = time.perf_counter()-t
    if not (work/'optimum-int8').exists():
        t = time.perf_counter()
        export_onnx('default', work/'optimum-int8', quantize='int8', verify=False, overwrite=True, progress=False, threads=threads, force=True)
        steps['optimum export + MatMulNBits int8'] = time.perf_counter()-t
    from convchat.optimize import PRECISIONS
    for p in ('fp32', 'int8', 'int4'):
        meta = work/f'fused-{p}'/'convchat-onnx.json'
        if not meta.exists() or json.loads(meta.read_text()).get('builder_args') != PRECISIONS[p]:   # rebuild when the recipe changed
            t = time.perf_counter(); build_fused_model('default', work/f'fused-{p}', p, overwrite=True)
            steps[f'fused build ({p})'] = time.perf_counter()-t
    return steps

def quality(work):
    "KL / top-1 of each ONNX graph against the fp32 Optimum export on a real chat."
    from convchat.runtime import compare_logits
    from convchat.runtime import ChatModel
    m = ChatModel(work/'optimum', threads=2)
    chat = [{'role':'user', 'content':'What is the capital of France? Tell me about its history.'},
            {'role':'assistant', 'content':'The capital of France is Paris. The Romans called it Lutetia; it became the seat of the French kings in the Middle Ages, and today it is known for the Eiffel Tower and the Louvre.'},
            {'role':'user', 'content':'How do I make a cup of tea?'},
            {'role':'assistant', 'content':'Boil water, pour it over a tea bag in a cup, wait three to five minutes, then remove the bag and add milk or sugar if you like.'}]
    ids = m.tokenizer.encode(m.prompt_text(chat), add_special_tokens=False).ids
    return {d: compare_logits(work/'optimum', work/d, ids) for d in ('optimum-int8', 'fused-fp32', 'fused-int8', 'fused-int4')}

CONTENDERS = ['pytorch-fp32', 'optimum-fp32', 'convchat-optimum-fp32', 'convchat-optimum-int8',
              'convchat-fused-fp32', 'convchat-fused-int8', 'convchat-fused-int4', 'genai-fused-int8']
GRAPH = {'convchat-optimum-int8': 'optimum-int8', 'convchat-fused-fp32': 'fused-fp32', 'convchat-fused-int8': 'fused-int8',
         'convchat-fused-int4': 'fused-int4', 'genai-fused-int8': 'fused-int8'}

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--tokens', type=int, default=128)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--work', default='/tmp/convchat-chat-bench')
    ap.add_argument('--int8-args', default=None, help="builder args for the fused 8-bit graph (default: convchat.optimize.PRECISIONS['int8'])")
    ap.add_argument('--only', nargs='*', default=None, help='contenders to run (default: all)')
    ap.add_argument('--one', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--report', action='store_true', help='rewrite chat.md from chat.json without running anything')
    a = ap.parse_args()
    if a.one: return run_one(a.one, a.work, a.threads, a.tokens)
    if a.report:
        old = json.loads((RESULTS/'chat.json').read_text())
        names = list(old['summary']); q = {GRAPH[n]: v['quality'] for n, v in old['summary'].items() if n in GRAPH}
        a.tokens, a.threads = old['tokens'], old['machine']['threads']
        return report(old['rounds'], names, q, old['build_seconds'], a)
    warnings.filterwarnings('ignore')
    if a.int8_args:
        import shlex, convchat.optimize
        convchat.optimize.PRECISIONS['int8'] = shlex.split(a.int8_args)
    work = Path(a.work)
    steps = build(work, a.threads)
    q = quality(work)
    names = a.only or CONTENDERS
    rounds = []
    for r in range(a.reps):
        row = {}
        for n in names:
            p = subprocess.run([sys.executable, __file__, '--one', n, '--work', str(work), '--threads', str(a.threads), '--tokens', str(a.tokens)],
                               capture_output=True, text=True)
            if p.returncode: print(f'{n} failed:\n{p.stderr[-2000:]}', file=sys.stderr); continue
            row[n] = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"round {r+1} {n:24s} load {row[n]['load_s']:5.1f}s ttft {row[n]['ttft_s']*1000:6.0f}ms "
                  f"decode {row[n]['decode_tok_s']:6.1f} tok/s  peak {row[n]['peak_rss_mb']:5.0f} MB  load avg {os.getloadavg()[0]:.1f}", file=sys.stderr)
        rounds.append(row)
        report(rounds, names, q, steps, a)

def report(rounds, names, q, steps, a):
    summary = {}
    for n in names:
        rs = [r for r in rounds if n in r and 'pytorch-fp32' in r]
        if not rs: continue
        ratios = [r[n]['decode_tok_s']/r['pytorch-fp32']['decode_tok_s'] for r in rs]
        ro = [r[n]['decode_tok_s']/r['optimum-fp32']['decode_tok_s'] for r in rs if 'optimum-fp32' in r]
        summary[n] = dict(decode_tok_s=statistics.median(r[n]['decode_tok_s'] for r in rs), ratio_to_pytorch=statistics.median(ratios), ratio_to_optimum=statistics.median(ro) if ro else None,
                          ttft_ms=1000*statistics.median(r[n]['ttft_s'] for r in rs), load_s=statistics.median(r[n]['load_s'] for r in rs),
                          peak_rss_mb=max(r[n]['peak_rss_mb'] for r in rs), prompt_tokens=rs[0][n]['prompt_tokens'],
                          same_tokens_as_pytorch=rs[0][n]['tokens'] == rs[0]['pytorch-fp32']['tokens'],
                          quality=q.get(GRAPH.get(n)))
    from convchat.optimize import PRECISIONS
    cpu = next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')), platform.processor())
    res = dict(machine=dict(platform=platform.platform(), cpu=cpu, cpus=os.cpu_count(), threads=a.threads, load_avg=os.getloadavg()),
               fused_int8_builder_args=PRECISIONS['int8'],
               tokens=a.tokens, reps=len(rounds), build_seconds=steps, summary=summary, rounds=rounds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS/'chat.json').write_text(json.dumps(res, indent=2))
    lines = [f"# Chat decode speed", "",
             f"SmolLM2-135M-Instruct, {summary.get('pytorch-fp32', {}).get('prompt_tokens', '?')}-token chat prompt, {a.tokens} greedy tokens, "
             f"{a.threads} threads, median of {len(rounds)} interleaved round(s) on a shared {os.cpu_count()}-core {res['machine']['cpu']} (1-minute load average at the end: {os.getloadavg()[0]:.1f}). "
             f"Fused 8-bit builder args: `{' '.join(PRECISIONS['int8'])}`. "
             "Ratios are to PyTorch in the same round. Quality: KL divergence and top-1 agreement of the graph's next-token "
             "distribution against the fp32 Optimum export on a real chat (teacher-forced). Reproduce: `python benchmarks/chat_bench.py`.", "",
             "| contender | decode tok/s | x PyTorch | x Optimum fp32 | time to first token | load | peak RSS | greedy = PyTorch | KL / top-1 |",
             "|---|---:|---:|---:|---:|---:|---:|:-:|---|"]
    for n, s in summary.items():
        ql = f"{s['quality']['kl']:.4f} / {100*s['quality']['top1']:.0f}%" if s['quality'] else ('0 (fp32 reference)' if 'fp32' in n else '')
        xo = f"{s['ratio_to_optimum']:.2f}" if s['ratio_to_optimum'] else ''
        lines.append(f"| {n} | {s['decode_tok_s']:.1f} | {s['ratio_to_pytorch']:.2f} | {xo} | {s['ttft_ms']:.0f} ms | {s['load_s']:.1f} s | "
                     f"{s['peak_rss_mb']:.0f} MB | {'yes' if s['same_tokens_as_pytorch'] else 'no'} | {ql} |")
    (RESULTS/'chat.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines), file=sys.stderr)

if __name__ == '__main__': main()
