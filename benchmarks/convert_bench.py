"""Export the default model (SmolLM2-135M-Instruct) to ONNX and measure sizes, times, verification, quality and decode speed.

    python benchmarks/convert_bench.py [--threads 2] [--tokens 64] [--out /tmp/convchat-convert-bench] [--no-dynamic]
    python benchmarks/convert_bench.py --speed-only   # re-measure decode speeds on the graphs already in --out

Steps, each timed: `export_onnx('default', quantize='int8', keep_fp32=True)` (Optimum export, KV-cache and tied-embedding
checks, verification against PyTorch on chat prompts, int8 quantization and its quality gate); then int4 block-wise from
the same fp32 graph, and (unless `--no-dynamic`) ONNX Runtime's dynamic int8 (`quantize_dynamic`, every MatMul, the
activation-by-activation ones included), each gated against fp32 on the example conversations. Decode speed is greedy
tokens per second for one chat prompt (prompt included in the time, `--tokens` new tokens, KV cache) for PyTorch and
each ONNX graph, all on `--threads` threads; the load average is recorded with them, since speeds on a shared machine mean
little. Results go to `benchmarks/results/convert.md` and `convert.json`.
"""
import argparse, json, os, platform, sys, time, warnings
from pathlib import Path
from benchlib import cpu_info, column, write_result

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
    ap.add_argument('--speed-only', action='store_true', help='re-measure decode speeds on the graphs already in --out')
    a = ap.parse_args()
    warnings.filterwarnings('ignore')
    import torch
    torch.set_num_threads(a.threads)
    from convchat.models import load_model
    from convchat.convert import (export_onnx, model_info, format_info, quantize_onnx, quality_gate, gate_token_ids,
                                  render_prompts, torch_reference, OnnxLM)
    out = Path(a.out)
    model, tok = load_model('default')
    if a.speed_only:
        res = json.loads((RESULTS/'convert.json').read_text())
        files = {k: r['file'] for k, r in res['quality'].items()}
    else:
        t0 = time.perf_counter()
        export_onnx('default', out, quantize='int8', keep_fp32=True, overwrite=True, progress=False, threads=a.threads)
        t_export = time.perf_counter() - t0
        info = model_info(out)
        print(format_info(info), file=sys.stderr)
        texts, fp32 = gate_token_ids(tok), out/'model.onnx'
        quality = {'int8': dict(info['quantization']['gate'], file='model_int8.onnx')}
        quantize_onnx(fp32, out/'model_int4.onnx', 'int4')
        quality['int4'] = dict(quality_gate(out/'model_int4.onnx', fp32, texts, 'int4', threads=a.threads).to_dict(), file='model_int4.onnx')
        if not a.no_dynamic:
            from onnxruntime.quantization import quantize_dynamic, QuantType
            quantize_dynamic(str(fp32), str(out/'model_dynamic_int8.onnx'), weight_type=QuantType.QInt8)
            quality['dynamic int8'] = dict(quality_gate(out/'model_dynamic_int8.onnx', fp32, texts, 'int8', threads=a.threads).to_dict(),
                                           file='model_dynamic_int8.onnx')
        res = dict(export_s=round(t_export, 1), verification=info['verification'],
                   sizes={p.name: p.stat().st_size for p in out.glob('*.onnx')}, quality=quality,
                   onnxruntime=info['onnxruntime'], optimum=info['optimum'], torch=info['torch'])
        files = {k: r['file'] for k, r in quality.items()}
    prompt = render_prompts(tok)[0]
    load0 = os.getloadavg()[0]
    speeds = {'PyTorch fp32': decode_speed(lambda: torch_reference(model, [prompt], a.tokens), a.tokens)}
    for name, f in [('ONNX fp32', 'model.onnx')] + [(f'ONNX {k}', f) for k, f in files.items()]:
        lm = OnnxLM(out/f, a.threads)
        speeds[name] = decode_speed(lambda: lm.greedy([prompt], a.tokens), a.tokens)
    res.update(machine=dict(cpu_info(a.threads), load_avg=round((load0 + os.getloadavg()[0])/2, 1)),
               tokens_per_s={k: round(v, 1) for k, v in speeds.items()})
    print(write_result('convert', report(res, a)).read_text())

CONVERT_COLUMNS = [column('graph', 'graph'), column('size_mb', 'size (MB)', '{:.0f}', True), column('kl', 'KL vs fp32', '{:.4f}'),
                   column('top1', 'top-1 agreement', '{:.1%}'), column('ppl_increase', 'perplexity change', '{:+.1%}'),
                   column('gate', 'gate'), column('tok_s', 'decode tokens/s', '{:.1f}', True)]

def report(res, a)->dict:
    "`res` with the title, intro, table and notes of the convert result"
    from convchat.convert import GATES
    v, sp, q = res['verification'], res['tokens_per_s'], res['quality']
    rows = [dict(graph='PyTorch fp32', tok_s=sp['PyTorch fp32']),
            dict(graph='ONNX fp32 (`model.onnx`)', size_mb=res['sizes']['model.onnx']/1e6, kl=0.0, top1=1.0, ppl_increase=0.0, tok_s=sp['ONNX fp32'])]
    rows += [dict(graph=f"ONNX {k} (`{g['file']}`)", size_mb=res['sizes'][g['file']]/1e6, kl=g['kl'], top1=g['top1'], ppl_increase=g['ppl_increase'],
                  gate='pass' if g['passed'] else 'FAIL', tok_s=sp['ONNX '+k]) for k, g in q.items()]
    return dict(res, title='Convert: SmolLM2-135M-Instruct to ONNX', reproduce=f'python benchmarks/convert_bench.py --threads {a.threads}',
        intro=(f"SmolLM2-135M-Instruct exported to ONNX with Optimum, then quantized; onnxruntime {res['onnxruntime']}, optimum "
               f"{res['optimum']}, torch {res['torch']}. `--speed-only` re-measures the speeds on the graphs already exported."),
        tables=[dict(columns=CONVERT_COLUMNS, rows=rows)],
        notes=[f"`export_onnx('default', quantize='int8', keep_fp32=True)`: {res['export_s']:.0f} s (export, checks, verification, int8, gate).",
               f"Verification (fp32 vs PyTorch, {v['n_prompts']} chat prompts x {v['n_tokens']} greedy tokens): max |logit diff| "
               f"{v['max_abs_diff']:.1e}, {v['tokens_equal']}/{v['n_prompts']*v['n_tokens']} tokens identical.",
               f"Quality: teacher-forced on the {q['int8']['n_texts']} example conversations ({q['int8']['n_tokens']} tokens), against the "
               "fp32 ONNX graph. Gates: " + '; '.join(f"{k}: KL <= {t.max_kl}, top-1 >= {t.min_top1:.0%}, perplexity <= +{t.max_ppl_increase:.0%}"
                                                      for k, t in GATES.items())
               + ". Dynamic int8 (`onnxruntime.quantization.quantize_dynamic`, int8 weights and activations) is gated with the int8 "
               "thresholds, for comparison only.",
               f"Decode speed: best of 3 runs of one chat prompt plus {a.tokens} greedy tokens over the KV cache (convchat.convert's "
               "numpy verification loop, no graph fusion; the chat runtime's own figures are in its benchmark)."])

if __name__ == '__main__': main()
