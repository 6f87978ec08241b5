"""Export the default model (SmolLM2-135M-Instruct) to ONNX and measure sizes, times, verification, quality and decode speed.

    python benchmarks/convert_bench.py [--threads 2] [--tokens 64] [--out /tmp/convchat-convert-bench] [--no-dynamic]

Steps, each timed: `export_onnx('default', quantize='int8', keep_fp32=True)` (Optimum export, KV-cache and tied-embedding
checks, verification against PyTorch on chat prompts, int8 quantization and its quality gate); then int4 block-wise from
the same fp32 graph, and (unless `--no-dynamic`) ONNX Runtime's dynamic int8 (`quantize_dynamic`, every MatMul, the
activation-by-activation ones included), each gated against fp32 on the example conversations. Decode speed is greedy
tokens per second for one chat prompt (prompt included in the time, `--tokens` new tokens, KV cache) for PyTorch and
each ONNX graph, all on `--threads` threads. Results go to `benchmarks/results/convert.md` and `convert.json`.
"""
import argparse, json, os, platform, sys, time, warnings
from pathlib import Path

RESULTS = Path(__file__).parent/'results'

def decode_speed(fn, n_tokens, repeats=3):
    "Best tokens per second of `fn()` (which generates `n_tokens`) over `repeats` runs, after one warm-up."
    fn(); best = float('inf')
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t0)
    return n_tokens / best

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--tokens', type=int, default=64)
    ap.add_argument('--out', default='/tmp/convchat-convert-bench')
    ap.add_argument('--no-dynamic', action='store_true')
    a = ap.parse_args()
    warnings.filterwarnings('ignore')
    import torch
    torch.set_num_threads(a.threads)
    from convchat.models import load_model
    from convchat.convert import (export_onnx, model_info, format_info, quantize_onnx, quality_gate, gate_token_ids,
                                  verify_onnx, render_prompts, torch_reference, OnnxLM, GateThresholds, GATES)
    out = Path(a.out)
    t0 = time.perf_counter()
    export_onnx('default', out, quantize='int8', keep_fp32=True, overwrite=True, progress=False, threads=a.threads)
    t_export = time.perf_counter() - t0
    info = model_info(out)
    print(format_info(info), file=sys.stderr)
    model, tok = load_model('default')
    texts = gate_token_ids(tok)
    fp32 = out/'model.onnx'
    rows = {'int8': dict(file='model_int8.onnx', gate=info['quantization']['gate'])}
    t0 = time.perf_counter(); quantize_onnx(fp32, out/'model_int4.onnx', 'int4'); t_q4 = time.perf_counter() - t0
    rows['int4'] = dict(file='model_int4.onnx', gate=quality_gate(out/'model_int4.onnx', fp32, texts, 'int4', threads=a.threads).to_dict(),
                        quantize_s=round(t_q4, 1))
    if not a.no_dynamic:
        from onnxruntime.quantization import quantize_dynamic, QuantType
        quantize_dynamic(str(fp32), str(out/'model_dynamic_int8.onnx'), weight_type=QuantType.QInt8)
        rows['dynamic int8'] = dict(file='model_dynamic_int8.onnx',
                                    gate=quality_gate(out/'model_dynamic_int8.onnx', fp32, texts, 'int8', threads=a.threads).to_dict())
    prompt = render_prompts(tok)[0]
    speeds = {'PyTorch fp32': decode_speed(lambda: torch_reference(model, [prompt], a.tokens), a.tokens)}
    for name, f in [('ONNX fp32', 'model.onnx')] + [(f'ONNX {k}', r['file']) for k, r in rows.items()]:
        lm = OnnxLM(out/f, a.threads)
        speeds[name] = decode_speed(lambda: lm.greedy([prompt], a.tokens), a.tokens)
    sizes = {p.name: p.stat().st_size for p in out.glob('*.onnx')}
    res = dict(machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {a.threads} threads",
               export_s=round(t_export, 1), verification=info['verification'], sizes=sizes,
               quality={k: r['gate'] for k, r in rows.items()}, tokens_per_s={k: round(v, 1) for k, v in speeds.items()},
               onnxruntime=info['onnxruntime'], optimum=info['optimum'], torch=info['torch'])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS/'convert.json').write_text(json.dumps(res, indent=2, default=str) + '\n')
    v = info['verification']
    md = [f"# Convert: SmolLM2-135M-Instruct to ONNX", '',
          f"Machine: {res['machine']}; onnxruntime {res['onnxruntime']}, optimum {res['optimum']}, torch {res['torch']}. "
          f"Rerun: `python benchmarks/convert_bench.py --threads {a.threads}`.", '',
          f"- `export_onnx('default', quantize='int8', keep_fp32=True)`: {t_export:.0f} s (export, checks, verification, int8, gate).",
          f"- Verification (fp32 vs PyTorch, {v['n_prompts']} chat prompts x {v['n_tokens']} greedy tokens): max |logit diff| "
          f"{v['max_abs_diff']:.1e}, {v['tokens_equal']}/{v['n_prompts']*v['n_tokens']} tokens identical.", '',
          '| graph | size (MB) | KL vs fp32 | top-1 agreement | perplexity change | gate | decode tokens/s |',
          '|---|---|---|---|---|---|---|',
          f"| PyTorch fp32 | | | | | | {speeds['PyTorch fp32']:.1f} |",
          f"| ONNX fp32 (`model.onnx`) | {sizes['model.onnx']/1e6:.0f} | 0 | 100% | 0 | | {speeds['ONNX fp32']:.1f} |"]
    for k, r in rows.items():
        g = r['gate']
        md.append(f"| ONNX {k} (`{r['file']}`) | {sizes[r['file']]/1e6:.0f} | {g['kl']:.4f} | {g['top1']:.1%} | {g['ppl_increase']:+.1%} | "
                  f"{'pass' if g['passed'] else 'FAIL'} | {speeds['ONNX '+k]:.1f} |")
    md += ['', f"Quality: teacher-forced on the {rows['int8']['gate']['n_texts']} example conversations "
           f"({rows['int8']['gate']['n_tokens']} tokens), against the fp32 ONNX graph. Gates: "
           + '; '.join(f"{k}: KL <= {t.max_kl}, top-1 >= {t.min_top1:.0%}, perplexity <= +{t.max_ppl_increase:.0%}" for k, t in GATES.items())
           + ". Dynamic int8 is gated with the int8 thresholds, for comparison only.",
           'Decode speed: best of 3 runs of one chat prompt plus 64 greedy tokens over the KV cache (numpy loop, no graph fusion).']
    (RESULTS/'convert.md').write_text('\n'.join(md) + '\n')
    print('\n'.join(md))

if __name__ == '__main__': main()
