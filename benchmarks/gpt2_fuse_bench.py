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

Results go to benchmarks/results/gpt2_fuse.json and gpt2_fuse.md (`--name` changes the stem; `--speed-only` reuses the
graphs already built in `--work` and skips the fidelity checks).
"""
import argparse, json, os, platform, statistics, sys, time, warnings
from pathlib import Path
import numpy as np

RESULTS = Path(__file__).parent/'results'
SIZE = dict(n_layer=6, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)   # DistilGPT-2

def cpu_info()->dict:
    info = Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else ''
    name = next((l.split(':', 1)[1].strip() for l in info.splitlines() if l.startswith('model name')), platform.processor())
    flags = set(next((l.split(':', 1)[1].split() for l in info.splitlines() if l.startswith('flags')), []))
    return dict(cpu=name, flags=[f for f in ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_int8') if f in flags],
                cores=os.cpu_count(), loadavg=os.getloadavg())

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
    from convchat.fuse import build_fused, INT8_BUILDS, _optimum_graph
    hf = work/'hf'
    if not (hf/'config.json').exists(): make_model(hf, std)
    if not (work/'plain'/'model.onnx').exists(): _optimum_graph(hf, work/'plain')
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

def main():
    warnings.filterwarnings('ignore')
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--tokens', type=int, default=128)
    ap.add_argument('--reps', type=int, default=3); ap.add_argument('--work', default='/tmp/convchat-gpt2-bench')
    ap.add_argument('--speed-only', action='store_true'); ap.add_argument('--name', default='gpt2_fuse')
    a = ap.parse_args()
    if a.speed_only: return speed_only(a)
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    prompt = np.random.default_rng(0).integers(0, SIZE['vocab_size'], 50).tolist()
    dirs, build_s = build_all(work/'std0.02', 0.02)
    meta = lambda d: json.loads((d/'convchat-onnx.json').read_text())
    fp = lambda d: {k: v for k, v in meta(d).items() if k in ('graph', 'bits', 'build', 'file_size')}
    q_default, _ = quality(work/'std0.02', 0.02)
    q_sharp, sharp_dirs = quality(work/'std0.2', 0.2)
    res = dict(model='GPT2Config ' + json.dumps(SIZE) + ', random weights', prompt_tokens=len(prompt), new_tokens=a.tokens,
               threads=a.threads, reps=a.reps, **cpu_info(), build_seconds=build_s,
               graphs={n: fp(d) for n, d in dirs.items() if n.startswith('fused')},
               fidelity={'std 0.02': q_default, 'std 0.2': q_sharp},
               greedy_64_std_02=greedy_agreement(sharp_dirs, a.threads, prompt),
               speed=speed(dirs, a.threads, a.tokens, a.reps, prompt))
    import onnxruntime, transformers, torch
    res['versions'] = dict(onnxruntime=onnxruntime.__version__, transformers=transformers.__version__, torch=torch.__version__)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS/'gpt2_fuse.json').write_text(json.dumps(res, indent=2) + '\n')
    (RESULTS/'gpt2_fuse.md').write_text(report(res))
    print(report(res))

def speed_only(a):
    "Decode speed alone, on the graphs a full run built in `--work`."
    w = Path(a.work)/'std0.02'
    dirs = dict(hf=w/'hf', **{'optimum-fp32': w/'plain'}, **{d.name: d for d in sorted(w.glob('fused-*'))})
    prompt = np.random.default_rng(0).integers(0, SIZE['vocab_size'], 50).tolist()
    res = dict(model='GPT2Config ' + json.dumps(SIZE) + ', random weights', prompt_tokens=len(prompt), new_tokens=a.tokens,
               threads=a.threads, reps=a.reps, **cpu_info(), speed=speed(dirs, a.threads, a.tokens, a.reps, prompt))
    s = res['speed']
    (RESULTS/f'{a.name}.json').write_text(json.dumps(res, indent=2) + '\n')
    md = [f"# GPT-2 fused graphs, decode speed only ({a.threads} thread{'s' if a.threads > 1 else ''})", '',
          f"{res['model']}; {res['prompt_tokens']}-token prompt, {a.tokens} greedy tokens, median of {a.reps} interleaved rounds. "
          f"CPU: {res['cpu']} ({', '.join(res['flags'])}), load average at start {', '.join(f'{x:.1f}' for x in res['loadavg'])}.", '',
          '| graph | decode tok/s | x PyTorch |', '|---|---|---|']
    md += [f"| {n} | {v} | {s['median_ratio_to_pytorch'][n]:.2f} |" for n, v in s['median_decode_tok_s'].items()]
    (RESULTS/f'{a.name}.md').write_text('\n'.join(md) + '\n'); print('\n'.join(md))

def report(r)->str:
    s = r['speed']
    lines = [f"# GPT-2 fused graphs (`convchat.fuse`)", '',
             f"{r['model']}; {r['prompt_tokens']}-token prompt, {r['new_tokens']} greedy tokens, {r['threads']} threads, "
             f"median of {r['reps']} interleaved rounds.", '',
             f"CPU: {r['cpu']} ({', '.join(r['flags'])}), {r['cores']} cores shared with other work (load average at start "
             f"{', '.join(f'{x:.1f}' for x in r['loadavg'])}). Versions: " + ', '.join(f'{k} {v}' for k, v in r['versions'].items()), '',
             '| graph | decode tok/s | x PyTorch |', '|---|---|---|']
    lines += [f"| {n} | {v} | {s['median_ratio_to_pytorch'][n]:.2f} |" for n, v in s['median_decode_tok_s'].items()]
    lines += ['', 'Fidelity against the plain Optimum export (teacher-forced, 128 random tokens):', '',
              '| init | graph | max abs diff | KL | top-1 | mean max prob |', '|---|---|---|---|---|---|']
    lines += [f"| {i} | {n} | {f['max_abs_diff']:.2e} | {f['kl']:.2e} | {f['top1']:.3f} | {f['max_prob']:.3f} |"
              for i, q in r['fidelity'].items() for n, f in q.items()]
    lines += ['', 'Greedy 64 tokens on the std 0.2 model, same as the plain export: ' +
              ', '.join(f"{n}: {'yes' if g['same'] else 'first difference at ' + str(g['first_difference'])}"
                        for n, g in r['greedy_64_std_02'].items()), '']
    return '\n'.join(lines)

if __name__ == '__main__': main()
