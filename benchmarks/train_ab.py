"""Training steps A/B in one process: the plain Trainer's step against convchat's, each variant its own model, same batches.

On a shared machine the load changes from minute to minute, so runs in separate processes compare badly. Here every variant
gets its own copy of the model (the same initial weights) and its own fused AdamW, and the variants take turns on the same
batches (round 1: A B C, round 2: A B C, ...; padded, or for the packed variants the same examples in one row), each a full
training step: forward, backward, gradient clipping and an optimizer step at a real learning rate. Each variant therefore
learns, and its loss after the same steps is compared with the plain Trainer's. The speed figure is the median over rounds of
the plain step's time over the variant's in the same round, in wall time and in this process's CPU time.

Variants:
  plain Trainer fp32                  the model's own loss (logits at every position), eager, padded batches, fp32
  convchat eager                      `label_loss` (logits only at labelled tokens), eager, padded
  convchat compiled blocks (padded)   `label_loss` through `compile_blocks` (regional torch.compile), padded: the old default
  convchat packed (eager)             `label_loss` on packed rows (`packed_attention`), eager (not run by default)
  convchat default (packed + ...)    packed rows through compiled blocks: convchat's CPU default
convchat's variants use the precision convchat picks on this CPU (`resolve_precision('auto')`: bf16 autocast with AMX or
AVX-512 BF16, fp32 otherwise). The first step of the compiled variant includes compiling (a fresh inductor cache, so it is
the cost of a first run); it is reported separately and left out of the speed figures.

    LD_PRELOAD=/tmp/avx2/cpuidmask.so python benchmarks/train_ab.py --name train_ab_avx2   # an AVX2-only CPU (CPUID mask)
    python benchmarks/train_ab.py --name train_ab_amx                                      # this CPU as it is
"""
from __future__ import annotations
import argparse, copy, os, resource, statistics, sys, tempfile, time
from pathlib import Path
from benchlib import machine_info, column, write_result

VARIANTS = {'plain Trainer fp32': ('plain', False), 'convchat eager': ('convchat', False),
            'convchat compiled blocks (padded)': ('convchat', True), 'convchat packed (eager)': ('packed', False),
            'convchat default (packed + compiled blocks)': ('packed', True)}
DEFAULT = 'plain Trainer fp32,convchat eager,convchat compiled blocks (padded),convchat default (packed + compiled blocks)'

GXX = """#!/bin/sh
# g++ for inductor under the CPUID mask: gcc's own SIGSEGV handler breaks the mask, so gcc runs unmasked, aimed at AVX2
unset LD_PRELOAD
for a; do shift; case "$a" in -march=native) set -- "$@" -march=haswell;; *) set -- "$@" "$a";; esac; done
exec g++ "$@"
"""

def masked_compiler(work:Path):
    "Under the CPUID mask, make inductor build AVX2 code with an unmasked g++ (the mask crashes gcc itself)."
    if 'cpuidmask' not in os.environ.get('LD_PRELOAD', ''): return
    import torch._inductor.config as ic
    (gxx := work/'g++-avx2').write_text(GXX); gxx.chmod(0o755)
    ic.cpp.cxx = (str(gxx),)

def bench_batches(tok, batch:int, n:int, max_tokens:int)->list:
    "`n` batches of `batch` conversations of 2/3 to 1 x `max_tokens` tokens."
    from convchat.tokenization import build_dataset
    from train_bench import bench_conversations
    ds, _ = build_dataset(bench_conversations(batch*n, max_tokens, tok), tok, 1024, progress=False)
    return [[ds[i] for i in range(k*batch, (k+1)*batch)] for k in range(n)]

def example_batches(tok, batch:int, n:int, max_tokens:int=None)->list:
    "The first `n` batches `convchat train` makes of the example data with the default settings (split, seed, length grouping)."
    from convchat.data import load_conversations, example_conversations_path
    from convchat.tokenization import build_dataset, split_dataset
    from convchat.recipe import TrainConfig
    from convchat.trainer import EpochLengthGroupedSampler
    c = TrainConfig()
    ds, _ = build_dataset(load_conversations(example_conversations_path()), tok, c.max_length, progress=False)
    tr, _ = split_dataset(ds, c.eval_fraction, c.seed)
    s, out = EpochLengthGroupedSampler(batch, [len(x['input_ids']) for x in tr], seed=c.seed), []
    for epoch in range(n):
        s.set_epoch(epoch); idx = list(s)
        out += [[tr[i] for i in idx[k:k+batch]] for k in range(0, len(idx), batch)]
    return out[:n]

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--warmup', type=int, default=2, help='warm-up steps of each variant (the first compiles) before the timed rounds')
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--max-tokens', type=int, default=256)
    p.add_argument('--data', default='bench', choices=['bench', 'example'],
                   help="bench: conversations of 2/3 to 1 x max-tokens; example: the example data's training split in the order "
                        "and batches `convchat train` gives it (length-grouped, epoch after epoch)")
    p.add_argument('--lr', type=float, default=1e-4)
    p.add_argument('--variants', default=DEFAULT, help='comma-separated; the first is the reference')
    p.add_argument('--name', default='train_ab')
    a = p.parse_args()
    load0 = round(os.getloadavg()[0], 2)
    print(f'load {load0}', flush=True)
    work = Path(tempfile.mkdtemp(prefix='train_ab-'))
    os.environ['TORCHINDUCTOR_CACHE_DIR'] = str(work/'inductor')      # a cold compile, as on a first run
    import torch
    torch.set_num_threads(a.threads)
    masked_compiler(work)
    from transformers import set_seed
    from convchat.models import load_model
    from convchat.tokenization import build_dataset, DataCollator, ensure_chat_template
    from convchat.recipe import resolve_precision
    from convchat.trainer import label_loss, compile_blocks, use_packed_attention
    names = [n.strip() for n in a.variants.split(',')]
    precision = resolve_precision('auto', cuda=False)
    set_seed(0)
    base, tok = load_model('default'); ensure_chat_template(tok)
    coll = DataCollator(tok)
    feats = (example_batches if a.data == 'example' else bench_batches)(tok, a.batch, a.rounds + 1, a.max_tokens)
    batches = [coll(f) for f in feats]
    packed = [DataCollator(tok, packing=True, model=base)(f) for f in feats] if any(VARIANTS[n][0] == 'packed' for n in names) else None
    runs = {}
    for n in names:
        kind, compiled = VARIANTS[n]
        m = copy.deepcopy(base).train()
        if kind == 'packed': assert use_packed_attention(m) is not None
        if compiled: compile_blocks(m)
        runs[n] = dict(model=m, opt=torch.optim.AdamW(m.parameters(), lr=a.lr, fused=True), kind=kind,
                       precision='fp32' if kind == 'plain' else precision, wall=[], cpu=[], loss=[])
    del base
    def step(r, k):
        b = packed[k] if r['kind'] == 'packed' else batches[k]
        m, t, c, s0 = r['model'], time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=r['precision'] == 'bf16'):
            loss = m(**b).loss if r['kind'] == 'plain' else label_loss(m, b)
        loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); r['opt'].step(); r['opt'].zero_grad()
        l = loss.item(); r.setdefault('sys', []).append(resource.getrusage(resource.RUSAGE_SELF).ru_stime - s0)
        return time.perf_counter() - t, time.process_time() - c, l
    first = {n: step(r, 0) for n, r in runs.items()}             # warm-up; the compiled variant compiles here
    for _ in range(a.warmup - 1): [step(r, 0) for r in runs.values()]
    for r in runs.values(): r['sys'] = []
    print('first step: ' + '  '.join(f'{n} {w:.1f}s' for n, (w, _, _) in first.items()), flush=True)
    for k in range(a.rounds):
        for n, r in runs.items():
            w, c, l = step(r, k + 1); r['wall'].append(w); r['cpu'].append(c); r['loss'].append(l)
        print(f"round {k}: " + '  '.join(f"{runs[n]['wall'][-1]:.1f}s/{runs[n]['cpu'][-1]:.1f}cpu/{runs[n]['sys'][-1]:.1f}sys loss {runs[n]['loss'][-1]:.4f}"
                                         for n in names) + f"  load {os.getloadavg()[0]:.1f}", flush=True)
    ref = runs[names[0]]
    toks = sum(int(b['attention_mask'].sum()) for b in batches[1:])
    pad_share = 1 - toks / sum(b['attention_mask'].numel() for b in batches[1:])
    rows = []
    for n, r in runs.items():
        rw = statistics.median(ref['wall'][i]/r['wall'][i] for i in range(a.rounds))
        rc = statistics.median(ref['cpu'][i]/r['cpu'][i] for i in range(a.rounds))
        extra = first[n][0] - statistics.median(r['wall'])
        rows.append(dict(name=n, precision=r['precision'], seconds_per_step=statistics.median(r['wall']), tokens_per_s=toks/sum(r['wall']),
                         cpu_seconds_per_step=statistics.median(r['cpu']), sys_seconds_per_step=statistics.median(r['sys']),
                         speedup=rw, cpu_speedup=rc,
                         first_step_extra_s=extra if VARIANTS[n][1] else None,
                         losses=r['loss'], final_loss=r['loss'][-1], max_loss_diff=max(abs(x - y) for x, y in zip(r['loss'], ref['loss']))))
    mach = machine_info(a.threads)
    res = dict(title=f"Training steps A/B ({'AVX2-only CPU, CPUID mask' if 'note' in mach else 'this CPU'})",
               intro=(f"SmolLM2-135M-Instruct, batch {a.batch} x " + ("the example data as `convchat train` batches it"
                      if a.data == 'example' else f"up to {a.max_tokens} tokens") + f" ({pad_share:.0%} of the padded batches' "
                      f"positions are padding; the packed variants get the same examples in one row), {a.rounds} rounds after {a.warmup} warm-up "
                      "steps; one process, each variant its own copy of the model and its own fused AdamW (learning rate "
                      f"{a.lr:g}, gradient clipping 1.0), taking turns on the same batches. vs plain: median over rounds of the "
                      "plain Trainer's step time over the variant's in the same round (wall, and this process's CPU time, user + kernel). "
                      "Loss: each variant's training loss after the same steps on the same batches. First-step extra: the "
                      "compiled variants' first step (a cold inductor cache) minus their median step, the compile cost of a first run."),
               reproduce=f"{'LD_PRELOAD=/tmp/avx2/cpuidmask.so ' if 'note' in mach else ''}python benchmarks/train_ab.py "
                         f"--rounds {a.rounds} --warmup {a.warmup} --data {a.data} --name {a.name}" + (f" --variants '{a.variants}'" if a.variants != DEFAULT else ''),
               machine=dict(mach, note=(mach.get('note', '') + '; shared machine').lstrip('; ')),
               settings=dict(data=a.data, rounds=a.rounds, batch=a.batch, max_tokens=a.max_tokens, lr=a.lr, precision=precision, tokens=toks,
                             pad_share=round(pad_share, 3), load_avg_start=load0,
                             date=time.strftime('%Y-%m-%d %H:%M'), load_avg_end=round(os.getloadavg()[0], 2)),
               tables=[dict(columns=[column('name', 'variant'), column('precision', 'precision'),
                                     column('tokens_per_s', 'tokens/s', '{:.0f}'), column('seconds_per_step', 's/step (median)', '{:.2f}'),
                                     column('speedup', 'vs plain (wall)', '{:.2f}x', True),
                                     column('cpu_seconds_per_step', 'CPU s/step (median)', '{:.2f}'),
                                     column('cpu_speedup', 'vs plain (CPU time)', '{:.2f}x', True),
                                     column('sys_seconds_per_step', 'of it kernel s/step (median)', '{:.2f}'),
                                     column('final_loss', 'loss after the last step', '{:.4f}'),
                                     column('max_loss_diff', 'max loss difference to plain', '{:.4f}'),
                                     column('first_step_extra_s', 'first-step extra (s)', '{:.0f}')], rows=rows)])
    print(write_result(a.name, res).read_text())
    import shutil; shutil.rmtree(work, ignore_errors=True)

if __name__ == '__main__': main()
