"""GGUF export of the default model at each bit width: file size and how the file answers, read back through transformers.

    python benchmarks/gguf_bench.py [--model default] [--label TEXT] [--work /tmp/convchat-gguf-bench] [--reuse] [--note TEXT ...] [--name gguf]

`convchat.ollama.export_gguf(model, bits=b)` (the default model, or a fine-tuned folder) for b in 16, 8, 4 (F16, Q8_0, Q4_1 with the kinds the check needs at Q8_0), each checked as convert
--format gguf checks it: teacher-forced KL, top-1 agreement and perplexity against the fp32 PyTorch model on the example
conversations and the verification prompts, tokenizer, chat template, stop ids and Modelfile. `--reuse` collects the
folders already in `--work` instead of exporting again. Results: benchmarks/results/<name>.json and <name>.md.
"""
import argparse, json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from benchlib import machine_info, column, write_result

def verdict(meta)->str:
    "The checks' verdict under today's `GGUF_GATES` (a folder exported with --force records its figures either way)."
    from convchat.gguf_export import GGUF_GATES
    v, t = meta['verification'], GGUF_GATES[meta['type']]; g = v['gate']
    ok = g['kl'] <= t.max_kl and g['top1'] >= t.min_top1 and g['ppl_increase'] <= t.max_ppl_increase and not v['problems']
    return 'pass' if ok else 'refused'

def main():
    p = argparse.ArgumentParser(); p.add_argument('--work', default='/tmp/convchat-gguf-bench'); p.add_argument('--reuse', action='store_true')
    p.add_argument('--model', default='default'); p.add_argument('--label', default='SmolLM2-135M-Instruct'); p.add_argument('--note', nargs='*', default=[]); p.add_argument('--name', default='gguf')
    a = p.parse_args(); work, rows, meta, trials = Path(a.work), [], {}, []
    for b in (4, 8, 16):                               # the most telling first, on a busy machine
        d = work/f'default-{b}'
        if not (a.reuse and (d/'convchat-gguf.json').is_file()):
            from convchat.ollama import export_gguf
            export_gguf(a.model, d, bits=b, overwrite=True, force=True)
        meta = json.loads((d/'convchat-gguf.json').read_text()); v = meta['verification']; g = v['gate']
        trials += [dict(step=k, q8=', '.join(t['q8']) or '(none: every layer matrix Q4_1)', kl=t['kl'], top1=t['top1'] * 100,
                        ppl=t['ppl_increase'] * 100, verdict='passes' if t['passed'] else 'fails') for k, t in enumerate(meta.get('q4_mix', []))]
        rows.append(dict(bits=b, type=meta['type'] + (f" + Q8_0 {'/'.join(meta['q8_kinds'])}" if meta.get('q8_kinds') else ''), mb=meta['file_size']/1e6, kl=g['kl'], top1=g['top1'] * 100,
                         ppl=g['ppl_increase'] * 100, max_diff=v['max_abs_diff'], checks=verdict(meta),
                         seconds=meta['seconds']))
    rows.sort(key=lambda r: -r['bits'])
    res = dict(title=f'GGUF export: {a.label}', reproduce='python benchmarks/gguf_bench.py' + (f' --model {a.model}' if a.model != 'default' else ''),
               intro=(f"`export_gguf(model, bits=b)` for {a.label}; the file read back by transformers {meta.get('transformers')} "
                      f"(gguf {meta.get('gguf')}) and compared with the fp32 PyTorch model, teacher-forced on "
                      f"{g['n_texts']} texts ({g['n_tokens']} tokens). llama.cpp: "
                      + ('checked' if v.get('llama_cpp') else 'not checked (llama-cpp-python not installed)') + '.'),
               machine=machine_info(), tables=[dict(columns=[
                   column('bits', 'bits'), column('type', 'type'), column('mb', 'file (MB)', '{:.0f}'), column('kl', 'KL', '{:.5f}'),
                   column('top1', 'top-1 (%)', '{:.1f}'), column('ppl', 'perplexity change (%)', '{:+.2f}'),
                   column('max_diff', 'max logit diff', '{:.3f}'), column('checks', 'checks'), column('seconds', 'export (s)', '{:.0f}')],
                   rows=rows)] + ([dict(title='The 4-bit mix: the gate on the model as each mix would store it (export_gguf tries them in this order and keeps the first that passes)',
                   columns=[column('step', 'step'), column('q8', 'kinds at Q8_0'), column('kl', 'KL', '{:.4f}'), column('top1', 'top-1 (%)', '{:.1f}'),
                            column('ppl', 'perplexity change (%)', '{:+.1f}'), column('verdict', 'gate')], rows=trials)] if trials else []),
               notes=a.note + ['The machine was shared with other engineers\' jobs: the export times are not representative.',
                      'Thresholds (convchat.gguf_export.GGUF_GATES): ' + '; '.join(
                          f"{k}: KL <= {t.max_kl}, top-1 >= {t.min_top1:.0%}, perplexity <= +{t.max_ppl_increase:.1%}"
                          for k, t in __import__('convchat.gguf_export', fromlist=['GGUF_GATES']).GGUF_GATES.items()),
                      'refused: convert --format gguf does not write the file (figures measured with --force).'])
    print(write_result(a.name, res).read_text())

if __name__ == '__main__': main()
