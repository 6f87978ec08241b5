"""Export the default model (SmolLM2-135M-Instruct) to ONNX and measure sizes, times, verification, quality and decode speed.

    python benchmarks/convert_bench.py [--threads 2] [--tokens 64] [--out /tmp/convchat-convert-bench] [--no-dynamic]
    python benchmarks/convert_bench.py --speed-only   # re-measure decode speeds on the graphs already in --out

Steps, each timed: `export('default', out/'default')`, the convert default (plain Optimum export, KV-cache and
tied-embedding checks, verification against PyTorch on chat prompts, then the fused graph with 8-bit weights behind its
quality gate, teacher-forced and free-running); `export('default', out/'plain', graph='plain', bits=None)`, the verified
fp32 plain export alone; the fused 4-bit graph (`convchat.fuse.build_fused(bits=4)`, not gated by the build) and (unless
`--no-dynamic`) ONNX Runtime's dynamic int8 of the plain graph (`quantize_dynamic`, every MatMul, the activations
quantized too), each scored with `convchat.verify.quality_gate` against the plain fp32 graph on the example
conversations. Decode speed is greedy tokens per second for one chat prompt (prompt included in the time, `--tokens` new
tokens, KV cache, `convchat.runtime.Decoder`) for PyTorch and each ONNX graph, all on `--threads` threads; the load
average is recorded with them, since speeds on a shared machine mean little. Results go to
`benchmarks/results/convert.md` and `convert.json`.
"""
import argparse, json, os, platform, shutil, sys, time, warnings
from pathlib import Path
from benchlib import machine_info, column, write_result

RESULTS = Path(__file__).parent/'results'
PLAIN = 'plain/model.onnx'      # the verified fp32 plain export, relative to --out: the reference of every quality row

def decode_speed(fn, n_tokens, repeats=3):
    "Best tokens per second of `fn()` (which generates `n_tokens`) over `repeats` runs, after one warm-up."
    fn(); best = float('inf')
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t0)
    return n_tokens / best

def graph_size(f:Path)->int:
    "Bytes of ONNX file `f` with its external data files."
    return sum(p.stat().st_size for p in f.parent.glob(f.name + '*'))

def timed(fn):
    t0 = time.perf_counter(); r = fn()
    return r, round(time.perf_counter() - t0, 1)

def export_all(out:Path, model, tok, a)->dict:
    "Export, build and gate every graph into `out`; the result without speeds."
    from convchat.convert import export, model_info, format_info
    from convchat.fuse import build_fused
    from convchat.models import default_model_path
    from convchat.runtime import resolve_onnx_file
    from convchat.verify import quality_gate, gate_token_ids, bits_name
    kw = dict(overwrite=True, progress=False, threads=a.threads)
    _, t_default = timed(lambda: export('default', out/'default', **kw))
    _, t_plain = timed(lambda: export('default', out/'plain', graph='plain', bits=None, **kw))
    info, pinfo = model_info(out/'default'), model_info(out/'plain')
    print(format_info(info), file=sys.stderr); print(format_info(pinfo), file=sys.stderr)
    texts, fp32 = gate_token_ids(tok), out/PLAIN
    default_file = f"default/{info['model_file']}"
    quality = {f"fused {bits_name(info['bits'])} (convert default)": dict(info['gate'], file=default_file)}
    _, t_int4 = timed(lambda: build_fused(default_model_path(), out/'fused-int4', bits=4, overwrite=True, threads=a.threads))
    f4 = resolve_onnx_file(out/'fused-int4')
    quality['fused 4-bit'] = dict(quality_gate(f4, fp32, texts, 4, threads=a.threads).to_dict(), file=str(f4.relative_to(out)))
    if not a.no_dynamic:
        from onnxruntime.quantization import quantize_dynamic, QuantType
        d = out/'dynamic-int8'; shutil.rmtree(d, ignore_errors=True); d.mkdir(parents=True)
        shutil.copy(out/'plain'/'config.json', d/'config.json')        # the KV-cache shape, for the decoder
        quantize_dynamic(str(fp32), str(d/'model.onnx'), weight_type=QuantType.QInt8)
        quality['dynamic int8'] = dict(quality_gate(d/'model.onnx', fp32, texts, 8, threads=a.threads).to_dict(), file='dynamic-int8/model.onnx')
    files = [PLAIN] + [q['file'] for q in quality.values()]
    return dict(export_s=t_default, plain_export_s=t_plain, int4_build_s=t_int4, verification=pinfo['verification'],
                default_graph=dict(graph=info['graph'], bits=info['bits'], build=info.get('build'), builder=info.get('builder'),
                                   builds_refused=info.get('builds_refused', []), gate_forced=info.get('gate_forced')),
                sizes={f: graph_size(out/f) for f in files}, quality=quality,
                onnxruntime=info.get('onnxruntime'), optimum=info.get('optimum'), torch=info.get('torch'))

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
    from convchat.runtime import Decoder
    from convchat.verify import render_prompts, torch_reference
    out = Path(a.out)
    model, tok = load_model('default')
    res = json.loads((RESULTS/'convert.json').read_text()) if a.speed_only else export_all(out, model, tok, a)
    files = {k: r['file'] for k, r in res['quality'].items()}
    missing = [f for f in [PLAIN, *files.values()] if not (out/f).exists()]
    if missing: sys.exit(f"{out}: no {', '.join(missing)}; run without --speed-only first")
    prompt = render_prompts(tok)[0]
    load0 = os.getloadavg()[0]
    speeds = {'PyTorch fp32': decode_speed(lambda: torch_reference(model, [prompt], a.tokens), a.tokens)}
    for name, f in [('ONNX fp32', PLAIN)] + [(f'ONNX {k}', f) for k, f in files.items()]:
        dec = Decoder(out/f, a.threads)
        speeds[name] = decode_speed(lambda: dec.greedy([prompt], a.tokens), a.tokens)
    res.update(machine=dict(machine_info(a.threads), load_avg=round((load0 + os.getloadavg()[0])/2, 1)),
               tokens_per_s={k: round(v, 1) for k, v in speeds.items()})
    print(write_result('convert', report(res, a)).read_text())

CONVERT_COLUMNS = [column('graph', 'graph'), column('size_mb', 'size (MB)', '{:.0f}', True), column('kl', 'KL vs fp32', '{:.4f}'),
                   column('top1', 'top-1 agreement', '{:.1%}'), column('ppl_increase', 'perplexity change', '{:+.1%}'),
                   column('gate', 'gate'), column('tok_s', 'decode tokens/s', '{:.1f}', True)]

def report(res, a)->dict:
    "`res` with the title, intro, table and notes of the convert result"
    from convchat.verify import GATES, bits_name
    from convchat.convert import build_name
    v, sp, q, dg = res['verification'], res['tokens_per_s'], res['quality'], res['default_graph']
    rows = [dict(graph='PyTorch fp32', tok_s=sp['PyTorch fp32']),
            dict(graph=f'ONNX fp32 plain export (`{PLAIN}`)', size_mb=res['sizes'][PLAIN]/1e6, kl=0.0, top1=1.0, ppl_increase=0.0,
                 tok_s=sp['ONNX fp32'])]
    rows += [dict(graph=f"ONNX {k} (`{g['file']}`)", size_mb=res['sizes'][g['file']]/1e6, kl=g['kl'], top1=g['top1'], ppl_increase=g['ppl_increase'],
                  gate='pass' if g['passed'] else 'FAIL', tok_s=sp['ONNX '+k]) for k, g in q.items()]
    g0 = next(iter(q.values()))
    refused = '; '.join(f"{bits_name(r['bits'])} ({build_name(r['build'])}) refused" for r in dg.get('builds_refused') or [])
    return dict(res, title='Convert: SmolLM2-135M-Instruct to ONNX', reproduce=f'python benchmarks/convert_bench.py --threads {a.threads}',
        intro=(f"SmolLM2-135M-Instruct exported to ONNX with `convchat.convert.export`; onnxruntime {res['onnxruntime']}, optimum "
               f"{res['optimum']}, torch {res['torch']}. `--speed-only` re-measures the speeds on the graphs already exported."),
        tables=[dict(columns=CONVERT_COLUMNS, rows=rows)],
        notes=[f"`export('default', d)` (the convert default): {res['export_s']:.0f} s (plain export, checks, verification, fused build, "
               f"quality gate); it wrote the {dg['graph']} graph, {bits_name(dg['bits'])}" + (f", build {build_name(dg['build'])}" if dg.get('build') else '')
               + (f" ({refused})" if refused else '') + (', gate FORCED' if dg.get('gate_forced') else '') + ". "
               f"`export('default', d, graph='plain', bits=None)`: {res['plain_export_s']:.0f} s (plain export, checks, verification). "
               f"`build_fused(bits=4)`: {res['int4_build_s']:.0f} s.",
               f"Verification (plain fp32 vs PyTorch, {v['n_prompts']} chat prompts x {v['n_tokens']} greedy tokens): max |logit diff| "
               f"{v['max_abs_diff']:.1e}, {v['tokens_equal']}/{v['n_prompts']*v['n_tokens']} tokens identical.",
               f"Quality: teacher-forced on the {g0['n_texts']} example conversations ({g0['n_tokens']} tokens), against the "
               "plain fp32 ONNX graph (the convert default's row is its own gate, against the plain export it made). Gates: "
               + '; '.join(f"{bits_name(k)}: KL <= {t.max_kl}, top-1 >= {t.min_top1:.0%}, perplexity <= +{t.max_ppl_increase:.0%}"
                           for k, t in GATES.items())
               + ". The convert default's gate also runs free (greedy replies to the probe prompts); the 4-bit row is teacher-forced only. "
               "Dynamic int8 (`onnxruntime.quantization.quantize_dynamic`, int8 weights and activations) is gated with the 8-bit "
               "thresholds, for comparison only.",
               f"Decode speed: best of 3 runs of one chat prompt plus {a.tokens} greedy tokens over the KV cache "
               "(`convchat.runtime.Decoder.greedy`, the runtime's loop; the chat benchmark has the runtime's figures in detail)."])

if __name__ == '__main__': main()
