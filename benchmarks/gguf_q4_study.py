"""Which 4-bit GGUF mix keeps a fine-tune: the quality gate on the model as each mix would store it.

    python benchmarks/gguf_q4_study.py --model FINE_TUNED_DIR [--gptq] [--name gguf_q4_study]

The default model's weights are de-quantized Q4_1, and a brief fine-tune moves them by less than a 4-bit step. For each
recipe (which kinds of matrices are stored as Q4_1, Q5_1 or Q8_0; the embedding/output always Q8_0), every weight is
rounded as `gguf.quants` writes it and de-quantized as transformers' GGUF loader reads it, and the model goes through
convert --format gguf's logit gate (`convchat.gguf_export._logit_gate`: teacher-forced KL, top-1 and perplexity against
the source model on the example conversations and the verification prompts). `--gptq` adds GPTQ-style error feedback
(Q4_1 grids, blocks of 32, calibrated on assets/ferry_conversations.json), which the `gguf` package cannot do itself.
Results: benchmarks/results/<name>.json and .md.
"""
import argparse, copy, sys, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).parent))
from benchlib import machine_info, column, write_result

SIZE = {'Q4_1': 5.0, 'Q5_1': 6.0, 'Q8_0': 8.5}     # bits a weight, scales included
KINDS = {'down': 'down_proj', 'up': 'up_proj', 'gate': 'gate_proj', 'o': 'o_proj', 'v': 'v_proj', 'q': 'q_proj', 'k': 'k_proj'}

def recipes():
    "label -> (kinds at Q8_0, type of the rest)"
    r = {'all Q4_1 (plain)': ((), 'Q4_1'), 'all Q5_1': ((), 'Q5_1'), 'all Q8_0 (= --bits 8)': (tuple(KINDS), 'Q4_1')}
    r.update({f'{k} Q8_0, rest Q4_1': ((k,), 'Q4_1') for k in KINDS})
    r.update({'v, down Q8_0, rest Q4_1': (('v', 'down'), 'Q4_1'), 'v, down Q8_0, rest Q5_1': (('v', 'down'), 'Q5_1'),
              'MLP Q8_0, attention Q4_1': (('down', 'up', 'gate'), 'Q4_1'), 'MLP Q8_0, attention Q5_1': (('down', 'up', 'gate'), 'Q5_1'),
              'MLP + o Q8_0': (('down', 'up', 'gate', 'o'), 'Q4_1'), 'MLP + o + v Q8_0': (('down', 'up', 'gate', 'o', 'v'), 'Q4_1'),
              'MLP + o + v + q Q8_0 (k Q4_1)': (('down', 'up', 'gate', 'o', 'v', 'q'), 'Q4_1')})
    return r

def gptq(W, H, group=32, damp=0.01):
    "W (out, in) on Q4_1 grids (blocks of 32 along `in`, fp16 scale and min), rounding errors fed forward through H = X^T X"
    f16 = lambda x: x.to(torch.float16).to(torch.float64)
    W = W.clone().double(); cols = W.shape[1]; H = H.clone()
    H[torch.diag(H) == 0, torch.diag(H) == 0] = 1; H += damp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True); Q = torch.zeros_like(W)
    for i1 in range(0, cols, group):
        W1, Hi = W[:, i1:i1+group].clone(), Hinv[i1:i1+group, i1:i1+group]; Err = torch.zeros_like(W1)
        mn = f16(W1.min(1).values); d = f16((W1.max(1).values - W1.min(1).values) / 15); dd = torch.where(d == 0, torch.ones_like(d), d)
        for i in range(group):
            w = W1[:, i]; q = torch.clamp(torch.round((w - mn) / dd), 0, 15) * d + mn; Q[:, i1+i] = q
            e = (w - q) / Hi[i, i]; W1[:, i:] -= e.unsqueeze(1) @ Hi[i, i:].unsqueeze(0); Err[:, i] = e
        W[:, i1+group:] -= Err @ Hinv[i1:i1+group, i1+group:]
    return Q.float()

def main():
    p = argparse.ArgumentParser(); p.add_argument('--model', required=True); p.add_argument('--gptq', action='store_true')
    p.add_argument('--name', default='gguf_q4_study'); p.add_argument('--label', default='SmolLM2-135M-Instruct fine-tuned 4 steps on the example conversations')
    a = p.parse_args()
    import gguf
    from gguf import GGMLQuantizationType as T
    from convchat.models import load_model
    from convchat.tokenization import ensure_chat_template
    from convchat.verify import VERIFY_PROMPTS, gate_token_ids
    from convchat.gguf_export import _logit_gate, _gate_texts
    torch.set_num_threads(1)
    m, tok = load_model(a.model); ensure_chat_template(tok, pad=False); m.eval()
    texts, sd, cache, rows = _gate_texts(tok, VERIFY_PROMPTS), {k: v.detach().float().numpy() for k, v in m.state_dict().items()}, {}, []
    def rt(k, t):
        if (k, t) not in cache: cache[k, t] = gguf.quants.dequantize(gguf.quants.quantize(sd[k], T[t]), T[t]).reshape(sd[k].shape)
        return cache[k, t]
    def gate(label, new, types):
        c = copy.deepcopy(m); c.load_state_dict({k: torch.as_tensor(v) for k, v in new.items()}, strict=False)
        g, _ = _logit_gate(m, c, texts, 'Q4_1')
        mb = sum(sd[k].size * SIZE[t] for k, t in types.items()) / 8e6
        rows.append(dict(recipe=label, mb=mb, kl=g.kl, top1=g.top1 * 100, ppl=g.ppl_increase * 100, gate='passes' if g.passed else 'fails'))
        print(rows[-1], flush=True)
    mats = [k for k, v in sd.items() if v.ndim == 2 and 'lm_head' not in k]
    for label, (q8, rest) in recipes().items():
        types = {k: 'Q8_0' if 'embed' in k or any(KINDS[x] in k for x in q8) else rest for k in mats}
        gate(label, {k: rt(k, t) for k, t in types.items()}, types)
    if a.gptq:
        from convchat.verify import gate_token_ids
        lins = {n: mod for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear) and '.layers.' in n}
        H = {n: torch.zeros(mod.in_features, mod.in_features, dtype=torch.float64) for n, mod in lins.items()}
        def hook(n):
            def f(mod, args): x = args[0].reshape(-1, args[0].shape[-1]).double(); H[n].add_(x.T @ x)
            return f
        hs = [mod.register_forward_pre_hook(hook(n)) for n, mod in lins.items()]
        from convchat.data import load_conversations
        calib = gate_token_ids(tok, Path(__file__).parents[1]/'convchat/assets/ferry_conversations.json')
        with torch.no_grad():
            for ids in calib: m(torch.tensor([ids]))
        for h in hs: h.remove()
        gq = {n + '.weight': gptq(torch.from_numpy(sd[n + '.weight']), H[n]).numpy() for n in lins}
        for label, q8 in (('GPTQ Q4_1 everywhere', ()), ('GPTQ Q4_1 attention, MLP Q8_0', ('down', 'up', 'gate'))):
            types = {k: 'Q8_0' if 'embed' in k or any(KINDS[x] in k for x in q8) else 'Q4_1' for k in mats}
            gate(label, {k: (rt(k, 'Q8_0') if t == 'Q8_0' else gq[k]) for k, t in types.items()}, types)
    res = dict(title=f'Which 4-bit GGUF mix keeps a fine-tune: {a.label}', reproduce=f'python benchmarks/gguf_q4_study.py --model FINE_TUNED_DIR' + (' --gptq' if a.gptq else ''),
               intro=__doc__.split('\n\n')[2].replace('\n', ' '), machine=machine_info(1),
               tables=[dict(columns=[column('recipe', 'recipe'), column('mb', 'weights (MB)', '{:.0f}'), column('kl', 'KL', '{:.4f}'),
                                     column('top1', 'top-1 (%)', '{:.1f}'), column('ppl', 'perplexity change (%)', '{:+.1f}'), column('gate', 'gate (4-bit limits)')], rows=rows)],
               notes=['Gate limits (GGUF_GATES["Q4_1"] = convert\'s 4-bit ONNX limits): KL <= 0.05, top-1 >= 90%, perplexity <= +5%.',
                      'weights (MB): the matrices at their types\' bits a weight (Q4_1 5, Q5_1 6, Q8_0 8.5), embedding included; the file adds norms and the tokenizer.'])
    print(write_result(a.name, res).read_text())

if __name__ == '__main__': main()
