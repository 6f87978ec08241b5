"""The training step's loss path, A/B in one process: the model's own loss against convchat's `label_loss`, step by step.

On a shared machine the load changes from minute to minute, so separate processes (train_bench.py) compare badly. Here one
model and one fused AdamW take turns over the variants on the same padded batches (round 1: A B C, round 2: A B C, ...), each
a full forward, backward and optimizer step, and the figure is the median over rounds of each variant's time against the
first variant's in the same round. What differs is only the loss path; padding and batch order are the same for all.

    LD_PRELOAD=/tmp/avx2/cpuidmask.so python benchmarks/train_loss_ab.py --name train_avx2    # fp32, AVX2 kernels
    python benchmarks/train_loss_ab.py --precision bf16 --name train_ab_amx                    # bf16 autocast (AMX)
"""
from __future__ import annotations
import argparse, os, statistics, time
from benchlib import machine_info, column, write_result

VARIANTS = {   # name: how the loss is computed
    'model loss (plain Trainer)': 'plain',
    'label_loss, positions any row needs (before)': 'union',
    'label_loss, labelled tokens only (now)': 'rows',
}

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rounds', type=int, default=4)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--max-tokens', type=int, default=256)
    p.add_argument('--precision', default='fp32', choices=['fp32', 'bf16'])
    p.add_argument('--name', default='train_avx2')
    a = p.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    from transformers import set_seed
    from convchat.models import load_model
    from convchat.tokenization import build_dataset, DataCollator, ensure_chat_template
    from convchat.trainer import label_loss
    from train_bench import bench_conversations
    set_seed(0)
    model, tok = load_model('default'); ensure_chat_template(tok); model.train()
    ds, _ = build_dataset(bench_conversations(a.batch*(a.rounds + 1), a.max_tokens, tok), tok, 1024, progress=False)
    coll = DataCollator(tok)
    batches = [coll([ds[i] for i in range(k*a.batch, (k+1)*a.batch)]) for k in range(a.rounds + 1)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-9, fused=True)   # a real step, but the weights barely move: losses stay comparable
    def step(kind, b):
        t = time.perf_counter()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=a.precision == 'bf16'):
            loss = model(**b).loss if kind == 'plain' else label_loss(model, b, compiled=kind == 'union')
        loss.backward(); opt.step(); opt.zero_grad()
        return time.perf_counter() - t, loss.item()
    for kind in VARIANTS.values(): step(kind, batches[0])               # warm-up
    times = {n: [] for n in VARIANTS}; losses = {n: [] for n in VARIANTS}
    for r in range(a.rounds):
        for n, kind in VARIANTS.items():
            t, l = step(kind, batches[r + 1]); times[n].append(t); losses[n].append(l)
        print(f"round {r}: " + '  '.join(f'{times[n][-1]:.2f}s' for n in VARIANTS), flush=True)
    first = list(VARIANTS)[0]
    toks = sum(int(b['attention_mask'].sum()) for b in batches[1:])
    rows = [dict(name=n, seconds_per_step=statistics.median(times[n]), tokens_per_s=toks/sum(times[n]),
                 speedup_vs_plain=statistics.median(times[first][i]/times[n][i] for i in range(a.rounds)),
                 mean_loss=sum(losses[n])/a.rounds) for n in VARIANTS]
    res = dict(title=f'Training step, loss path A/B ({a.precision})',
               intro=(f"SmolLM2-135M-Instruct, {a.precision}, batch {a.batch} x up to {a.max_tokens} tokens (padded), {a.rounds} rounds; "
                      "one process, one model and optimizer, the variants taking turns on the same batches (forward, backward, "
                      "fused AdamW step). vs plain: median over rounds of the plain step's time over this variant's in the same round. "
                      "mean loss: each variant's loss on the same batches (learning rate 1e-9, so the weights barely move and the losses must agree)."),
               reproduce=f"{'LD_PRELOAD=/tmp/avx2/cpuidmask.so ' if 'cpuidmask' in os.environ.get('LD_PRELOAD', '') else ''}"
                         f"python benchmarks/train_loss_ab.py --precision {a.precision} --rounds {a.rounds} --name {a.name}",
               machine=dict(machine_info(a.threads), note=(machine_info(a.threads).get('note', '') + '; shared machine').lstrip('; ')),
               settings=dict(rounds=a.rounds, batch=a.batch, max_tokens=a.max_tokens, precision=a.precision, date=time.strftime('%Y-%m-%d')),
               times=times,
               tables=[dict(columns=[column('name', 'loss path'), column('tokens_per_s', 'tokens/s', '{:.0f}'),
                                     column('seconds_per_step', 's/step (median)', '{:.2f}'),
                                     column('speedup_vs_plain', 'vs plain (median of rounds)', '{:.2f}x', True),
                                     column('mean_loss', 'mean loss', '{:.3f}')], rows=rows)])
    print(write_result(a.name, res).read_text())

if __name__ == '__main__': main()
