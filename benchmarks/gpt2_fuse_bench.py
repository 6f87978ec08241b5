"""GPT-2 fused graphs: decode speed and fidelity of `convchat.fuse.build_fused` on a DistilGPT-2-sized model, side by side.

    python benchmarks/gpt2_fuse_bench.py [--threads 2] [--tokens 128] [--reps 3] [--work /tmp/convchat-gpt2-bench]
                                         [--speed-only --name gpt2_fuse_1thread]

Model: a GPT2Config of DistilGPT-2's size (6 layers, 768 wide, 12 heads, vocabulary 50,257, 82M parameters) with random
weights (no weights are downloaded here); speed does not depend on the weights. Prompt: 50 fixed token ids.

Contenders, all greedy, exactly `--tokens` new tokens (end of text ignored), `--threads` threads, one process,
interleaved for `--reps` rounds because this machine's CPU is shared (report the median round):
  pytorch-fp32            transformers `generate` on the fp32 model
  optimum-fp32            convchat's decode loop on Optimum's plain export (the reference graph)
  fused-fp32              convchat's loop on `build_fused(..., bits=None)`: ONNX Runtime's GPT-2 fusions on that export
  fused-int8              `build_fused(..., bits=8)` with each of `INT8_BUILDS` (MatMulNBits, asymmetric blocks)

Fidelity, teacher-forced on 128 random token ids, against the plain export: max |logit difference|, mean KL and top-1
agreement, on the default initialisation (std 0.02, nearly flat predictions) and on a sharper one (std 0.2), plus
whether 64 greedy tokens of the sharper model agree.

Results go to benchmarks/results/gpt2_fuse.json and gpt2_fuse.md, written by benchlib (the markdown made from the JSON,
which the docs page nbs/90_benchmarks.ipynb reads). `--name` changes the stem; `--speed-only` reuses the graphs a full
run already built in `--work` and skips the fidelity checks.
"""
import argparse, json, statistics, sys, time, warnings
from pathlib import Path
import numpy as np
from benchlib import machine_info, column, write_result

SIZE = dict(n_layer=6, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)   # DistilGPT-2
WORK = '/tmp/convchat-gpt2-bench'

def make_model(dest:Path, std:float, seed:int=0)->Path:
    "A DistilGPT-2-sized GPT-2 with random weights (std `std`), saved with convchat's tiny GPT-2 tokenizer files."
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from convchat.models import gpt2_tiny_tokenizer
    torch.manual_seed(seed)
    m = GPT2LMHeadModel(GPT2Config(**SIZE, initializer_range=std, bos_token_id=50256, eos_token_id=50256)).eval()
    m.save_pretrained(dest); gpt2_tiny_tokenizer().save_pretrained(dest)
    return dest

def build_all(work:Path, std:float)->dict:
    "The HF folder, its plain Optimum export and the fused graphs, built once per `work` folder."
    from convchat.fuse import build_fused, INT8_BUILDS, optimum_export
    hf = work/'hf'
    if not (hf/'config.json').exists(): make_model(hf, std)
    if not (work/'plain'/'model.onnx').exists(): optimum_export(hf, work/'plain')
    for f in hf.glob('*.json'): (work/'plain'/f.name).write_bytes(f.read_bytes())    # the runtime's files
    for f in ('vocab.json', 'merges.txt'): (work/'plain'/f).write_bytes((hf/f).read_bytes())
    dirs, t = dict(hf=hf, **{'optimum-fp32': work/'plain'}), {}
    builds = [('fused-fp32', None, None)] + [(f"fused-int8-b{a['block_size']}", 8, a) for a in INT8_BUILDS]
    for name, bits, args in builds:
        t0 = time.perf_counter()
        dirs[name] = build_fused(hf, work/name, bits, args, overwrite=True, plain=work/'plain'/'model.onnx')
        t[name] = round(time.perf_counter()-t0, 1)
    return dirs, t

def onnx_logits(d:Path, ids:list)->np.ndarray:
    "(T, V) logits of one sequence in one pass with an empty cache."
    import onnxruntime as ort
    s = ort.InferenceSession(str(d/'model.onnx'), providers=['CPUExecutionProvider'])
    x = np.array([ids], np.int64)
    feed = dict(input_ids=x, attention_mask=np.ones_like(x), position_ids=np.arange(len(ids))[None])
    feed.update({i.name: np.zeros((1, SIZE['n_head'], 0, SIZE['n_embd']//SIZE['n_head']), np.float32)
                 for i in s.get_inputs() if i.name.startswith('past_key_values.')})
    return s.run(['logits'], {i.name: feed[i.name] for i in s.get_inputs()})[0][0].astype(np.float64)

def fidelity(ref:np.ndarray, cand:np.ndarray)->dict:
    ls = lambda x: (x - x.max(-1, keepdims=True)) - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))
    la, lb = ls(ref), ls(cand)
    return dict(max_abs_diff=float(np.abs(ref-cand).max()), kl=float((np.exp(la)*(la-lb)).sum(-1).mean()),
                top1=float((ref.argmax(-1) == cand.argmax(-1)).mean()), max_prob=float(np.exp(la).max(-1).mean()))

# ---- decoding ------------------------------------------------------------------------------------------------------
class OnnxContender:
    "convchat's decode loop (`runtime.Decoder`) on one graph."
    def __init__(self, d, threads):
        from convchat.runtime import Decoder, GenerationConfig
        dec = Decoder(d, threads=threads)
        self.steps = lambda p, n: (s.tokens for s in dec.steps([p], GenerationConfig.greedy(max_new_tokens=n)))
    def run(self, prompt, tokens):
        t0 = time.perf_counter(); it = self.steps(prompt, tokens+1); first = int(next(it)[0]); t1 = time.perf_counter()
        out = [first] + [int(x[0]) for x in it]; t2 = time.perf_counter()
        return dict(ttft_s=t1-t0, decode_s=t2-t1, tokens=out)

class TorchContender:
    def __init__(self, d, threads):
        import torch
        from transformers import GPT2LMHeadModel
        torch.set_num_threads(threads)
        self.torch, self.m = torch, GPT2LMHeadModel.from_pretrained(d).eval()
    def _gen(self, prompt, n):
        with self.torch.inference_mode():
            x = self.torch.tensor([prompt])
            return self.m.generate(x, attention_mask=self.torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                   pad_token_id=0, eos_token_id=None)[0, len(prompt):].tolist()
    def run(self, prompt, tokens):
        t0 = time.perf_counter(); self._gen(prompt, 1); t1 = time.perf_counter()
        out = self._gen(prompt, tokens+1); t2 = time.perf_counter()
        return dict(ttft_s=t1-t0, decode_s=(t2-t1)-(t1-t0), tokens=out)     # decode: the whole run less one prefill

def speed(dirs, threads, tokens, reps, prompt):
    names = ['pytorch-fp32', 'optimum-fp32', 'fused-fp32'] + sorted(n for n in dirs if n.startswith('fused-int8'))
    cs = {n: TorchContender(dirs['hf'], threads) if n == 'pytorch-fp32' else OnnxContender(dirs[n], threads) for n in names}
    for c in cs.values(): c.run(prompt, 4)                                           # warm-up
    rounds = []
    for r in range(reps):
        row = {}
        for n, c in cs.items():
            o = c.run(prompt, tokens)
            row[n] = dict(decode_tok_s=round(tokens/o['decode_s'], 1), ttft_s=round(o['ttft_s'], 4), first_tokens=o['tokens'][:8])
            print(r, n, row[n]['decode_tok_s'], 'tok/s', flush=True)
        rounds.append(row)
    med = {n: statistics.median(r[n]['decode_tok_s'] for r in rounds) for n in names}
    ratio = {n: statistics.median(r[n]['decode_tok_s']/r['pytorch-fp32']['decode_tok_s'] for r in rounds) for n in names}
    return dict(rounds=rounds, median_decode_tok_s=med, median_ratio_to_pytorch=ratio)

def quality(work, std):
    dirs, _ = build_all(work, std)
    ids = np.random.default_rng(1).integers(0, SIZE['vocab_size'], 128).tolist()
    ref = onnx_logits(dirs['optimum-fp32'], ids)
    return {n: fidelity(ref, onnx_logits(d, ids)) for n, d in dirs.items() if n.startswith('fused')}, dirs

def greedy_agreement(dirs, threads, prompt, n=64):
    ref = OnnxContender(dirs['optimum-fp32'], threads).run(prompt, n)['tokens']
    out = {}
    for k, d in dirs.items():
        if not k.startswith('fused'): continue
        t = OnnxContender(d, threads).run(prompt, n)['tokens']
        out[k] = dict(same=t == ref, first_difference=next((i for i, (a, b) in enumerate(zip(ref, t)) if a != b), None),
                      distinct_tokens=len(set(ref)))
    return out

def init_key(init:str)->str: return init.replace('std ', 'std').replace('.', '')      # 'std 0.02' -> 'std002'

def make_result(spd:dict, machine:dict, tokens:int, reps:int, prompt_tokens:int, name:str='gpt2_fuse', fidelity:dict|None=None,
                greedy:dict|None=None, build_seconds:dict|None=None, graphs:dict|None=None, versions:dict|None=None,
                work:str=WORK, note:str|None=None)->dict:
    """The benchlib result of one run: `spd` from `speed`, `machine` from `machine_info`, and for a full run the fidelity
    (`{'std 0.02': quality(...)[0], ...}`), the greedy agreement, build times, graph metadata and versions."""
    threads, full = machine.get('threads'), fidelity is not None
    cmd = f"python benchmarks/gpt2_fuse_bench.py --threads {threads} --tokens {tokens} --reps {reps}"
    if work != WORK: cmd += f" --work {work}"
    if not full: cmd += ' --speed-only'
    if name != 'gpt2_fuse': cmd += f" --name {name}"
    cfg = f"{SIZE['n_layer']} layers, {SIZE['n_embd']} wide, {SIZE['n_head']} heads, vocabulary {SIZE['vocab_size']:,}"
    intro = (f"GPT-2 with DistilGPT-2's shape (`GPT2Config` {cfg}) and random weights; a {prompt_tokens}-token prompt, "
             f"{tokens} greedy tokens (end of text ignored), {threads} thread{'s' if threads != 1 else ''}, all contenders in one "
             f"process, interleaved for {reps} rounds, median round reported. x PyTorch: decode speed over PyTorch fp32 "
             "`generate` in the same round (median of the per-round ratios). optimum-fp32: the plain Optimum export decoded by "
             "convchat's runtime; fused-*: `convchat.fuse.build_fused` (ONNX Runtime's GPT-2 fusions; int8: MatMulNBits, "
             "block size in the name).")
    if not full: intro += f" Speed only, on the graphs a full run built in `{work}`."
    cols = [column('graph', 'graph'), column('decode_tok_s', 'decode tok/s', '{:.1f}', True),
            column('ratio_to_pytorch', 'x PyTorch', '{:.2f}', True)]
    rows = [dict(graph=n, decode_tok_s=v, ratio_to_pytorch=spd['median_ratio_to_pytorch'][n])
            for n, v in spd['median_decode_tok_s'].items()]
    tnote, notes = '', []
    if full:
        for init in fidelity:
            k = init_key(init)
            cols += [column(f'max_abs_diff_{k}', f'max abs diff ({init})', '{:.2e}'), column(f'kl_{k}', f'KL ({init})', '{:.2e}'),
                     column(f'top1_{k}', f'top-1 ({init})', '{:.3f}')]
        if greedy: cols.append(column('greedy_64_same', 'greedy 64 = plain'))
        for r in rows:
            for init, q in fidelity.items():
                if (f := q.get(r['graph'])):
                    k = init_key(init)
                    r.update({f'max_abs_diff_{k}': f['max_abs_diff'], f'kl_{k}': f['kl'], f'top1_{k}': f['top1']})
            if greedy and (g := greedy.get(r['graph'])):
                r['greedy_64_same'] = True if g['same'] else f"differs at token {g['first_difference']}"
        probs = ', '.join(f"{next(iter(q.values()))['max_prob']:.3f} ({i})" for i, q in fidelity.items() if q)
        tnote = ("Fidelity against the plain Optimum export, teacher-forced on 128 random token ids: max |logit difference|, "
                 f"mean KL and top-1 agreement (the plain export's mean top probability: {probs}). Greedy 64: 64 greedy tokens "
                 "of the std 0.2 model, the same as the plain export's (else the first token that differs).")
        if build_seconds: notes.append('Build time: ' + ', '.join(f'{n} {s} s' for n, s in build_seconds.items()) + '.')
    notes.append('The CPU may be shared with other work: compare the x PyTorch ratios, taken within a round, more than the tok/s.')
    if versions: notes.append('Versions: ' + ', '.join(f'{k} {v}' for k, v in versions.items()) + '.')
    if note: notes.insert(0, note)
    rows = [{c['key']: r.get(c['key']) for c in cols} for r in rows]          # every row has every column (blank: None)
    title = ('GPT-2 fused graphs (`convchat.fuse`)' if full else
             f"GPT-2 fused graphs, decode speed only ({threads} thread{'s' if threads != 1 else ''})")
    res = dict(title=title, intro=intro, reproduce=cmd, machine=machine,
               settings=dict(tokens=tokens, threads=threads, reps=reps, prompt_tokens=prompt_tokens, speed_only=not full,
                             work=work, gpt2_config=SIZE),
               tables=[dict(title='', columns=cols, rows=rows, note=tnote)], notes=notes, speed=spd)   # speed: the raw rounds
    if full: res.update(fidelity=fidelity, greedy_64_std_02=greedy, build_seconds=build_seconds, graphs=graphs)
    if versions: res['versions'] = versions
    return res

def versions()->dict:
    import onnxruntime, transformers, torch
    return dict(onnxruntime=onnxruntime.__version__, transformers=transformers.__version__, torch=torch.__version__)

def main():
    warnings.filterwarnings('ignore')
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--tokens', type=int, default=128)
    ap.add_argument('--reps', type=int, default=3); ap.add_argument('--work', default=WORK)
    ap.add_argument('--speed-only', action='store_true'); ap.add_argument('--name', default='gpt2_fuse')
    ap.add_argument('--note', default=None, help='a remark put first in the notes (e.g. what else ran on the machine)')
    a = ap.parse_args()
    prompt = np.random.default_rng(0).integers(0, SIZE['vocab_size'], 50).tolist()
    kw = dict(tokens=a.tokens, reps=a.reps, prompt_tokens=len(prompt), name=a.name, work=a.work, note=a.note)
    if a.speed_only:                                  # decode speed alone, on the graphs a full run built in `--work`
        w = Path(a.work)/'std0.02'
        dirs = dict(hf=w/'hf', **{'optimum-fp32': w/'plain'}, **{d.name: d for d in sorted(w.glob('fused-*'))})
        machine = machine_info(a.threads)
        res = make_result(speed(dirs, a.threads, a.tokens, a.reps, prompt), machine, versions=versions(), **kw)
    else:
        work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
        dirs, build_s = build_all(work/'std0.02', 0.02)
        meta = lambda d: json.loads((d/'convchat-onnx.json').read_text())
        fp = lambda d: {k: v for k, v in meta(d).items() if k in ('graph', 'bits', 'build', 'file_size')}
        q_default, _ = quality(work/'std0.02', 0.02)
        q_sharp, sharp_dirs = quality(work/'std0.2', 0.2)
        greedy = greedy_agreement(sharp_dirs, a.threads, prompt)
        machine = machine_info(a.threads)
        res = make_result(speed(dirs, a.threads, a.tokens, a.reps, prompt), machine,
                          fidelity={'std 0.02': q_default, 'std 0.2': q_sharp}, greedy=greedy, build_seconds=build_s,
                          graphs={n: fp(d) for n, d in dirs.items() if n.startswith('fused')}, versions=versions(), **kw)
    md = write_result(a.name, res)
    print(md.read_text())

if __name__ == '__main__': main()
