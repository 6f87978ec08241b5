"""Decoding defaults study: which repetition penalty, window and loop guard keep SmolLM2-135M-Instruct out of loops.

For each candidate setting, greedy replies to the probe prompts (convchat/assets/probe_prompts.json) from the fp32 Optimum
export and the fused 8-bit folder (both written by `convchat.convert.export`); counts degenerate replies (a 4-token n-gram that occurs 4 or more times), replies that
run to the token budget, and factual answers kept (an expected answer in the reply). The loop guard only ends a reply
early, so its effect is computed from the same greedy run (the reply cut where `ends_in_loop` first fires).
`--noise S` adds runs with N(0, S) noise on the logits (seeded) to stand in for another CPU's rounding near ties.

    PYTHONPATH=. python benchmarks/decoding_study.py [--work /tmp/decoding] [--noise 0.2 --noise_seeds 3]

Writes benchmarks/results/decoding_study.json and .md."""
import argparse, json, time
from pathlib import Path
from benchlib import column, write_result, machine_info
import numpy as np
import convchat.runtime as cc
import convchat.sampling as sampling   # `Row.choose` calls its `next_tokens`
from convchat.core import cpu_info
from convchat.runtime import ChatModel, ends_in_loop, repeated_ngram

SETTINGS = [dict(name='off (plain greedy)', repetition_penalty=1.0, repeat_last_n=64),
            dict(name='1.05, last 64', repetition_penalty=1.05, repeat_last_n=64),
            dict(name='1.1, last 64', repetition_penalty=1.1, repeat_last_n=64),
            dict(name='1.2, last 64', repetition_penalty=1.2, repeat_last_n=64),
            dict(name='1.1, whole sequence', repetition_penalty=1.1, repeat_last_n=-1),
            dict(name='1.2, whole sequence', repetition_penalty=1.2, repeat_last_n=-1)]

def degenerate(ids, n=4, k=4)->bool:
    "Some n-gram of tokens occurs at least k times."
    return repeated_ngram(ids, n, k) is not None

def guard_cut(ids)->int:
    "Length of the reply with the loop guard on (where `ends_in_loop` first fires), or len(ids)."
    return next((i for i in range(1, len(ids)+1) if ends_in_loop(ids[:i])), len(ids))

def run(model, prompts, s, max_new, noise=0.0, seed=0):
    "Greedy replies (no loop guard) with setting `s`; optional logit noise."
    orig, rng = sampling.next_tokens, np.random.default_rng(seed)
    if noise: sampling.next_tokens = lambda logits, *a, **k: orig(logits + rng.normal(0, noise, logits.shape), *a, **k)
    try:
        kw = dict(max_new_tokens=max_new, repetition_penalty=s['repetition_penalty'], repeat_last_n=s['repeat_last_n'], loop_guard=False)
        conv = [[{'role': 'user', 'content': p['prompt']}] for p in prompts]
        return model.generate_batch(conv, batch_size=len(conv), **kw)   # same replies as one by one, faster
    finally: sampling.next_tokens = orig

def score(model, prompts, gens):
    rows = []
    for p, g in zip(prompts, gens):
        cut = guard_cut(g.token_ids)
        text_g = model.decode(g.token_ids[:cut])
        hit = lambda t: any(e.lower() in t.lower() for e in p['expect']) if p['expect'] else None
        rows.append(dict(prompt=p['prompt'], tokens=len(g.token_ids), finish=g.finish_reason, degenerate=degenerate(g.token_ids),
                         exact=hit(g.text), guard_tokens=cut, guard_fired=cut < len(g.token_ids), exact_guard=hit(text_g), text=g.text[:400]))
    fact = [r for r in rows if r['exact'] is not None]
    return dict(degenerate=sum(r['degenerate'] for r in rows), ran_to_budget=sum(r['finish'] == 'length' for r in rows),
                guard_fired=sum(r['guard_fired'] for r in rows), tokens=sum(r['tokens'] for r in rows),
                tokens_with_guard=sum(r['guard_tokens'] for r in rows), exact=sum(r['exact'] for r in fact),
                exact_with_guard=sum(r['exact_guard'] for r in fact), factual=len(fact), replies=rows)

def first_token_margins(model, prompts):
    "fp32 first-token top-1 minus top-2 probability per prompt."
    out = []
    for p in prompts:
        ids = model.encode([{'role': 'user', 'content': p['prompt']}])
        lg = model.decoder.logits([ids])[:, -1]                 # (1, vocab): the first reply token's logits
        pr = np.exp(lg[0] - lg[0].max()); pr /= pr.sum(); a, b = np.sort(pr)[-2:][::-1]
        out.append(dict(prompt=p['prompt'], margin=round(float(a-b), 3), top=model.decode([int(lg[0].argmax())])))
    return out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--work', default='/tmp/decoding'); ap.add_argument('--max_new', type=int, default=128)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--noise', type=float, default=0.2)
    ap.add_argument('--noise_seeds', type=int, default=1); ap.add_argument('--out', default='benchmarks/results/decoding_study')
    a = ap.parse_args()
    print('CPU:', cpu_info(a.threads), flush=True)
    work, t0 = Path(a.work), time.time()
    int8, fp32 = work/'int8', work/'fp32'
    from convchat.convert import export
    if not (fp32/'convchat-onnx.json').exists():        # the verified fp32 Optimum export (the reference)
        export('default', fp32, graph='plain', bits=None, overwrite=True, progress=False, threads=a.threads)
    if not (int8/'convchat-onnx.json').exists():        # the convert default: fused, 8 bits behind the quality gate
        export('default', int8, graph='fused', bits=8, overwrite=True, progress=False, threads=a.threads)
    prompts = json.loads((Path(cc.__file__).parent/'assets'/'probe_prompts.json').read_text())
    res = dict(prompts=len(prompts), max_new_tokens=a.max_new, threads=a.threads, noise=a.noise, noise_seeds=a.noise_seeds,
               degenerate_rule='a 4-token n-gram occurring >= 4 times', loop_guard=dict(repeats=cc._LOOP_REPEATS, span=cc._LOOP_SPAN, period=cc._LOOP_PERIOD),
               models={})
    for name, d in (('fp32 (Optimum export, convchat loop)', fp32), ('int8 (fused, gated, convchat loop)', int8)):
        m = ChatModel(d, threads=a.threads)
        r = res['models'][name] = dict(settings={})
        if 'fp32' in name: r['first_token_margins'] = first_token_margins(m, prompts)
        for s in SETTINGS:
            sc = score(m, prompts, run(m, prompts, s, a.max_new))
            noisy = [score(m, prompts, run(m, prompts, s, a.max_new, a.noise, k)) for k in range(a.noise_seeds if 'int8' in name and a.noise else 0)]
            for n_ in noisy: n_.pop('replies')
            r['settings'][s['name']] = dict(**s, **sc, noisy=noisy)
            print(f"{name:38} {s['name']:22} degenerate {sc['degenerate']:2}/{len(prompts)}  budget {sc['ran_to_budget']:2}  "
                  f"exact {sc['exact']}/{sc['factual']} (guard {sc['exact_with_guard']})  guard fired {sc['guard_fired']}  tokens {sc['tokens']}->{sc['tokens_with_guard']}"
                  + ''.join(f"  | noise: deg {n_['degenerate']} exact {n_['exact']} guard {n_['guard_fired']}" for n_ in noisy), flush=True)
    res['seconds'] = round(time.time()-t0)
    rows = [dict(model=mn, setting=sn, degenerate=s['degenerate'], ran_to_budget=s['ran_to_budget'], exact=f"{s['exact']}/{s['factual']}",
                 exact_guard=f"{s['exact_with_guard']}/{s['factual']}", guard_fired=s['guard_fired'], tokens=f"{s['tokens']} ({s['tokens_with_guard']})",
                 noisy='; '.join(f"{n_['degenerate']} / {n_['exact']} / {n_['guard_fired']}" for n_ in s['noisy']) or '-')
            for mn, r in res['models'].items() for sn, s in r['settings'].items()]
    cols = [column('model', 'model'), column('setting', 'setting'), column('degenerate', 'degenerate'), column('ran_to_budget', 'ran to budget'),
            column('exact', 'exact'), column('exact_guard', 'exact, guard on'), column('guard_fired', 'guard fired'),
            column('tokens', 'tokens (guard on)'), column('noisy', 'noisy: degenerate / exact / guard fired')]
    res.update(title='Decoding defaults study', reproduce='python benchmarks/decoding_study.py', machine=machine_info(a.threads),
               intro=(f"{len(prompts)} probe prompts, greedy, {a.max_new} new tokens. Degenerate: {res['degenerate_rule']}. "
                      f"Noise runs: N(0, {a.noise}) on the logits, {a.noise_seeds} seeds (int8)."),
               tables=[dict(columns=cols, rows=rows)])
    out = Path(a.out)
    write_result(out.name, res, out.parent)
    print('wrote', out.with_suffix('.json'), f"in {res['seconds']} s")

if __name__ == '__main__': main()
