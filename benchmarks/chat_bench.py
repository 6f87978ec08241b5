"""Chat decode speed: the graphs `convchat convert` writes, decoded by convchat's runtime, against PyTorch `generate`, side by side.

    python benchmarks/chat_bench.py [--threads 2] [--tokens 128] [--reps 3] [--work /tmp/convchat-chat-bench] [--only NAME ...] [--rebuild]

Two models. The default SmolLM2-135M-Instruct (the real weights, `convchat.models.default_model_path()`), and a
GPT-2-style model the size of distilgpt2 (6 layers, 768 wide, 50,257 tokens) with random weights, so nothing downloads.
For each: PyTorch fp32 `generate`, the plain Optimum export (fp32), and the fast graphs: for SmolLM2 the convert
default (fused, 8-bit behind the quality gate) and fused fp32; for GPT-2 the fused graph `convchat.fuse.build_fused`
makes (fp32 and 8-bit). The graphs are built once into `--work` and reused.

Every contender greedy-decodes exactly `--tokens` tokens (no stop token, no repeat penalty: the same work as PyTorch
`generate`) after a 4-token warm-up, in a fresh process, so its load time and peak memory are its own. Contenders run
interleaved for `--reps` rounds because the CPU may be shared: the ratio to PyTorch is taken within a round, against
the same model's PyTorch row, and the median round is reported. Quality: KL divergence and top-1 agreement of each
graph's next-token distribution against the model's plain fp32 export, teacher-forced on a chat.

Results: benchmarks/results/chat.json and chat.md (made from the JSON by benchlib).
"""
import argparse, json, os, statistics, subprocess, sys, time, warnings
from pathlib import Path
from benchlib import RESULTS, cpu_info, column, write_result

QUESTION = "I am planning a trip to Paris next spring with my family. Can you suggest a three day itinerary with museums and parks?"
CHAT = [{'role': 'user', 'content': 'What is the capital of France? Tell me about its history.'},
        {'role': 'assistant', 'content': 'The capital of France is Paris. The Romans called it Lutetia; it became the seat of the French '
                                         'kings in the Middle Ages, and today it is known for the Eiffel Tower and the Louvre.'},
        {'role': 'user', 'content': 'How do I make a cup of tea?'},
        {'role': 'assistant', 'content': 'Boil water, pour it over a tea bag in a cup, wait three to five minutes, then remove the bag.'}]
GPT2_CONFIG = dict(n_layer=6, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257)   # distilgpt2's shape

# ---- the convchat interface this script uses: the only lines to touch when convchat renames things ------------------
INTERIM = set()   # the pre-issue-11 functions used where the new ones are not there yet (recorded in the result)

def export(model, onnx_dir, graph='auto', bits='auto'):
    "convert.export: graph 'plain' (fp32, not verified) or 'fused', bits None or 8; 'auto' for the convert default"
    from convchat.convert import export
    if graph == 'plain': return export(model, onnx_dir, graph='plain', bits=None, verify=False, overwrite=True, progress=False)
    return export(model, onnx_dir, graph=graph, bits=bits, overwrite=True)

def build_fused(model_dir, out_dir, bits, plain=None):
    "fuse.build_fused: one fused graph of the model (GPT-2: from its plain export's ONNX file `plain`), not gated"
    from convchat.fuse import build_fused
    return build_fused(model_dir, out_dir, bits=bits, overwrite=True, plain=plain)

def graph_file(onnx_dir)->Path:
    "The ONNX file of an exported folder"
    meta = Path(onnx_dir)/'convchat-onnx.json'
    return Path(onnx_dir)/(json.loads(meta.read_text()).get('model_file', 'model.onnx') if meta.exists() else 'model.onnx')

def greedy_steps(onnx_dir, threads):
    "A function (ids, n) -> iterator of the (1,) next tokens of plain greedy decoding with convchat's decoder"
    from convchat.runtime import Decoder, GenerationConfig
    dec = Decoder(onnx_dir, threads=threads)
    return lambda ids, n: (s.tokens for s in dec.steps([ids], GenerationConfig.greedy(max_new_tokens=n)))

def quality(reference_dir, candidate_dir, ids)->dict:
    "KL and top-1 of the candidate graph against the reference on `ids`, teacher-forced"
    from convchat.runtime import compare_logits
    return compare_logits(reference_dir, candidate_dir, ids)

def default_model()->Path:
    from convchat.models import default_model_path
    return default_model_path()

# ---- the models and contenders --------------------------------------------------------------------------------------
def gpt2_folder(work):
    "A distilgpt2-sized GPT-2 with random weights, saved with convchat's small GPT-2 tokenizer"
    d = work/'gpt2-model'
    if (d/'config.json').exists(): return d
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel
    from convchat.models import gpt2_tiny_tokenizer
    tok = gpt2_tiny_tokenizer(); torch.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config(**GPT2_CONFIG, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()
    # GPT-2's own init gives flat logits (mean top probability 0.0002): near ties flip greedy tokens between any two correct
    # runtimes, so convert's verification could not pass. The embedding (tied to the output) x4 gives a model that discriminates
    # (mean top probability 0.8, top-2 margin >= 1.9 logits on a chat).
    with torch.no_grad(): m.transformer.wte.weight.mul_(4)
    m.save_pretrained(d); tok.save_pretrained(d)
    return d

# name: (model, label, how the folder is built (None: PyTorch on the model folder))
CONTENDERS = {
    'smol-pytorch':     ('SmolLM2-135M', 'PyTorch fp32', None),
    'smol-plain':       ('SmolLM2-135M', 'plain export fp32', lambda src, w: export(src, w/'smol-plain', graph='plain', bits=None)),
    'smol-default':     ('SmolLM2-135M', 'convert default (fused, 8-bit gated)', lambda src, w: export(src, w/'smol-default')),
    'smol-fused-fp32':  ('SmolLM2-135M', 'fused fp32', lambda src, w: export(src, w/'smol-fused-fp32', graph='fused', bits=None)),
    'gpt2-pytorch':     ('GPT-2 (distilgpt2 size)', 'PyTorch fp32', None),
    'gpt2-plain':       ('GPT-2 (distilgpt2 size)', 'plain export fp32', lambda src, w: export(src, w/'gpt2-plain', graph='plain', bits=None)),
    'gpt2-default':     ('GPT-2 (distilgpt2 size)', 'convert default (fused, 8-bit gated)', lambda src, w: export(src, w/'gpt2-default')),
    'gpt2-fused-fp32':  ('GPT-2 (distilgpt2 size)', 'fused fp32', lambda src, w: build_fused(src, w/'gpt2-fused-fp32', None, graph_file(w/'gpt2-plain'))),
    'gpt2-fused-int8':  ('GPT-2 (distilgpt2 size)', 'fused 8-bit', lambda src, w: build_fused(src, w/'gpt2-fused-int8', 8, graph_file(w/'gpt2-plain'))),
}
def family(name): return name.split('-')[0]
def source(name, work): return default_model() if family(name) == 'smol' else gpt2_folder(work)

def prompt_ids(name, work)->list:
    "The chat question rendered with the model's template (GPT-2: its plain text), as token ids"
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(source(name, work))
    if tok.chat_template: return tok.apply_chat_template([{'role': 'user', 'content': QUESTION}], add_generation_prompt=True)
    return tok.encode(QUESTION)

def build(work, names)->dict:
    "Build the missing graph folders; return how each folder in `work` was built (kept in builds.json) and what failed"
    log = work/'builds.json'
    builds, failed = json.loads(log.read_text()) if log.exists() else {}, {}
    for n in names:
        make = CONTENDERS[n][2]
        if make is None or (work/n/'convchat-onnx.json').exists() or (work/n/'model.onnx').exists(): continue
        t, before = time.perf_counter(), set(INTERIM)
        try: make(source(n, work), work)
        except Exception as e: failed[n] = f'{type(e).__name__}: {str(e)[:300]}'; print(f'{n}: build failed: {failed[n]}', file=sys.stderr); continue
        builds[n] = dict(seconds=round(time.perf_counter()-t, 1), interim=sorted(INTERIM - before))
        log.write_text(json.dumps(builds, indent=1))
    return dict(builds={n: b for n, b in builds.items() if n in names}, build_failed=failed)

def _peak_rss_mb():
    "This process's peak resident memory (VmHWM, not inherited from the parent across exec)"
    for l in Path('/proc/self/status').read_text().splitlines():
        if l.startswith('VmHWM:'): return int(l.split()[1])/1024

def run_one(name, work, threads, tokens, ids):
    "Time one contender in this (fresh) process and print its figures as JSON"
    warnings.filterwarnings('ignore')
    t0 = time.perf_counter()
    if CONTENDERS[name][2] is None:
        import torch
        from transformers import AutoModelForCausalLM
        torch.set_num_threads(threads)
        m = AutoModelForCausalLM.from_pretrained(source(name, work), torch_dtype=torch.float32).eval(); load = time.perf_counter()-t0
        x = torch.tensor([ids]); kw = dict(attention_mask=torch.ones_like(x), do_sample=False, pad_token_id=0)
        def gen(n):
            with torch.inference_mode(): return m.generate(x, max_new_tokens=n, min_new_tokens=n, **kw)[0, x.shape[1]:].tolist()
        gen(4)
        t = time.perf_counter(); gen(1); ttft = time.perf_counter()-t
        t = time.perf_counter(); toks = gen(tokens); total = time.perf_counter()-t
    else:
        steps = greedy_steps(work/name, threads); load = time.perf_counter()-t0
        list(steps(ids, 4))
        toks, t = [], time.perf_counter()
        for tok in steps(ids, tokens):
            toks.append(int(tok[0]))
            if len(toks) == 1: ttft = time.perf_counter()-t
        total = time.perf_counter()-t
    print(json.dumps(dict(name=name, load_s=load, ttft_s=ttft, total_s=total, n=len(toks), tokens=toks, prompt_tokens=len(ids),
                          peak_rss_mb=_peak_rss_mb(), decode_tok_s=(len(toks)-1)/(total-ttft), interim=sorted(INTERIM))))

# ---- the run and its report ---------------------------------------------------------------------------------------
def summarize(rounds, names, q)->list[dict]:
    "One row per contender: medians over the rounds, ratios to its model's PyTorch row within each round"
    rows = []
    for n in names:
        base = f'{family(n)}-pytorch'
        rs = [r for r in rounds if n in r and base in r]
        if not rs: continue
        med = lambda k: statistics.median(r[n][k] for r in rs)
        qn = q.get(n)
        rows.append(dict(name=n, model=CONTENDERS[n][0], contender=f"{family(n).replace('smol', 'SmolLM2').replace('gpt2', 'GPT-2')} {CONTENDERS[n][1]}",
                         decode_tok_s=med('decode_tok_s'), ratio_to_pytorch=statistics.median(r[n]['decode_tok_s']/r[base]['decode_tok_s'] for r in rs),
                         ttft_ms=1000*med('ttft_s'), load_s=med('load_s'), peak_rss_mb=max(r[n]['peak_rss_mb'] for r in rs),
                         prompt_tokens=rs[0][n]['prompt_tokens'], same_tokens_as_pytorch=rs[0][n]['tokens'] == rs[0][base]['tokens'],
                         kl=qn and qn['kl'], top1=qn and qn['top1'], rounds=len(rs)))
    return rows

COLUMNS = [column('contender', 'contender'), column('decode_tok_s', 'decode tok/s', '{:.1f}', True),
           column('ratio_to_pytorch', 'x PyTorch', '{:.2f}', True), column('ttft_ms', 'time to first token', '{:.0f} ms'),
           column('load_s', 'load', '{:.1f} s'), column('peak_rss_mb', 'peak RSS', '{:.0f} MB'),
           column('same_tokens_as_pytorch', 'greedy = PyTorch'), column('kl', 'KL vs plain fp32', '{:.4f}'),
           column('top1', 'top-1 vs plain fp32', '{:.1%}')]

def graph_meta(work, names)->dict:
    "What each built folder's convchat-onnx.json says about its graph (builder args, bits, graph)"
    keep = ('graph', 'bits', 'build', 'builds_refused', 'model_file')
    out = {}
    for n in names:
        f = work/n/'convchat-onnx.json'
        if f.exists(): out[n] = {k: v for k, v in json.loads(f.read_text()).items() if k in keep}
    return out

def report(rounds, names, q, built, a, machine):
    rows = summarize(rounds, names, q)
    res = dict(title='Chat decode speed',
               intro=(f"Greedy decoding of {a.tokens} tokens after a chat prompt ("
                      + ', '.join(f"{r['model']}: {r['prompt_tokens']} tokens" for r in rows if r['name'].endswith('-pytorch')) + "), "
                      f"median of {len(rounds)} interleaved round(s), each contender in a fresh process. x PyTorch: decode speed over the "
                      "same model's PyTorch fp32 `generate` in the same round. SmolLM2-135M-Instruct with its real weights; GPT-2: "
                      "distilgpt2's shape with random weights. KL / top-1: the graph's next-token distribution against the model's "
                      "plain fp32 export on a chat, teacher-forced."),
               reproduce=f'python benchmarks/chat_bench.py --threads {a.threads} --tokens {a.tokens} --reps {a.reps}',
               machine=machine, settings=dict(tokens=a.tokens, threads=a.threads, reps=a.reps, gpt2_config=GPT2_CONFIG),
               versions=versions(), interim=sorted(INTERIM), graphs=graph_meta(Path(a.work), names), **built,
               tables=[dict(columns=COLUMNS, rows=rows)],
               notes=[f"{n}: built with {', '.join(b['interim'])} (the issue-11 function was not there yet)"
                      for n, b in built['builds'].items() if b['interim']]
                     + [f"{n}: not measured, its graph failed to build ({e})" for n, e in built['build_failed'].items()], rounds=rounds)
    for n, g in res['graphs'].items():
        if n.endswith('-default'):
            shipped = f"{g.get('graph')} graph, {g['bits'] or 32}-bit weights" + (f" ({g['build']})" if g.get('build') else '')
            refused = '; refused by the gate: ' + ', '.join(map(str, g['builds_refused'])) if g.get('builds_refused') else ''
            res['notes'].append(f"{n} (what `convchat convert` writes by default on this machine): {shipped}{refused}.")
    if a.note: res['notes'].insert(0, a.note)
    return write_result('chat', res, a.results)

def versions()->dict:
    from importlib.metadata import version, PackageNotFoundError
    out = {}
    for p in ('onnxruntime', 'onnxruntime-genai', 'torch', 'transformers', 'optimum', 'optimum-onnx'):
        try: out[p] = version(p)
        except PackageNotFoundError: pass
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--tokens', type=int, default=128)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--work', default='/tmp/convchat-chat-bench')
    ap.add_argument('--only', nargs='*', default=None, help=f"contenders to run (default: all of {', '.join(CONTENDERS)})")
    ap.add_argument('--results', default=RESULTS, type=Path, help='folder for chat.json and chat.md')
    ap.add_argument('--note', default='', help='a remark to put first under the table (e.g. that the machine was shared)')
    ap.add_argument('--rebuild', action='store_true', help="rebuild the selected contenders' graph folders in --work")
    ap.add_argument('--build-only', action='store_true', help='build the graph folders in --work and stop')
    ap.add_argument('--one', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--ids', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work)
    if a.one: return run_one(a.one, work, a.threads, a.tokens, json.loads(a.ids))
    warnings.filterwarnings('ignore')
    os.environ.setdefault('OMP_NUM_THREADS', str(a.threads))
    names = a.only or list(CONTENDERS)
    names += [f'{family(n)}-{k}' for n in names for k in ('pytorch', 'plain')]   # the ratios' baseline, the quality reference
    names = [n for n in CONTENDERS if n in names]
    machine = cpu_info(a.threads)
    print(f"CPU: {machine['cpu']} ({' '.join(machine['flags'])}), {machine['cores']} cores, {a.threads} threads", file=sys.stderr)
    work.mkdir(parents=True, exist_ok=True)
    if a.rebuild:
        import shutil
        for n in names:
            if CONTENDERS[n][2] is not None: shutil.rmtree(work/n, ignore_errors=True)
    built = build(work, names)
    if a.build_only: return print(json.dumps(built, indent=1))
    names = [n for n in names if n not in built['build_failed']]
    ids = {f: prompt_ids(f'{f}-pytorch', work) for f in {family(n) for n in names}}
    chat_ids = {}
    q = {}
    for n in names:
        if CONTENDERS[n][2] is None or n.endswith('-plain'): continue
        try: q[n] = quality(work/f'{family(n)}-plain', work/n, chat_ids.setdefault(family(n), chat_token_ids(n, work)))
        except Exception as e: print(f'{n}: quality not measured: {type(e).__name__}: {e}', file=sys.stderr)
    rounds = []
    for r in range(a.reps):
        row = {}
        for n in names:
            p = subprocess.run([sys.executable, __file__, '--one', n, '--work', str(work), '--threads', str(a.threads),
                                '--tokens', str(a.tokens), '--ids', json.dumps(ids[family(n)])], capture_output=True, text=True)
            if p.returncode: print(f'{n} failed:\n{p.stderr[-2000:]}', file=sys.stderr); continue
            row[n] = json.loads(p.stdout.strip().splitlines()[-1]); INTERIM.update(row[n].pop('interim'))
            print(f"round {r+1} {n:18s} load {row[n]['load_s']:5.1f}s ttft {row[n]['ttft_s']*1000:6.0f}ms decode {row[n]['decode_tok_s']:6.1f} "
                  f"tok/s peak {row[n]['peak_rss_mb']:5.0f} MB load avg {os.getloadavg()[0]:.1f}", file=sys.stderr)
        rounds.append(row)
        machine['load_avg'] = round(os.getloadavg()[0], 2)
        md = report(rounds, names, q, built, a, machine)
    print(md.read_text())

def chat_token_ids(name, work)->list:
    "A chat rendered with the model's template (GPT-2: the messages' text), as token ids, for the quality columns"
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(source(name, work))
    if tok.chat_template: return tok.apply_chat_template(CHAT)
    return tok.encode(' '.join(m['content'] for m in CHAT))

if __name__ == '__main__': main()
