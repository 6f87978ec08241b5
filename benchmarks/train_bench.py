"""Training throughput: convchat's trainer against a plain transformers `Trainer`, side by side on the same data.

Each configuration runs in its own process (so peak RSS is its own), one after another and interleaved
(baseline, ours, baseline, ours...), because the machine is shared and absolute figures drift; compare the ratios.

    .venv/bin/python benchmarks/train_bench.py                 # CPU fp32 and bf16, SmolLM2-135M, batch 4 x ~256 tokens
    .venv/bin/python benchmarks/train_bench.py --repeats 2 --steps 6

Results: benchmarks/results/train.json and benchmarks/results/train.md.
Tokens/s counts real (non-padding) tokens and, separately, assistant tokens (the ones with a label).
"""
from __future__ import annotations
import argparse, json, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path
from benchlib import machine_info, column, write_result

HERE = Path(__file__).resolve().parent
RESULTS = HERE/'results'
CONFIGS = {  # name: (trainer, precision, extra TrainConfig options for ours); 'before': convchat as of `--before` (a git ref)
    'plain Trainer fp32': ('plain', 'fp32', {}),
    'convchat fp32 before': ('before', 'fp32', {}),
    'convchat fp32': ('convchat', 'fp32', {}),
    'convchat fp32 packing': ('convchat', 'fp32', {'packing': True}),
    'convchat bf16 before': ('before', 'bf16', {}),
    'plain Trainer bf16': ('plain', 'bf16', {}),
    'convchat bf16': ('convchat', 'bf16', {}),
    'convchat bf16 packing': ('convchat', 'bf16', {'packing': True}),
}

def bench_conversations(n:int, max_tokens:int, tok):
    "`n` multi-turn conversations of up to ~`max_tokens` tokens, made by joining the example conversations' exchanges."
    import random
    from convchat.data import load_conversations, example_conversations_path, Conversation
    from convchat.tokenization import tokenize_conversation
    rounds = []
    for c in load_conversations(example_conversations_path()):
        ms = [m for m in c.messages if m['role'] != 'system']
        rounds += [ms[i:i+2] for i in range(0, len(ms) - 1, 2) if ms[i]['role'] == 'user' and ms[i+1]['role'] == 'assistant']
    rng, out = random.Random(0), []
    while len(out) < n:
        target, msgs = rng.randint(max_tokens*2//3, max_tokens), []
        while True:
            nxt = msgs + rng.choice(rounds)
            if msgs and len(tokenize_conversation(nxt, tok, 10_000)['input_ids']) > target: break
            msgs = nxt
        out.append(Conversation(msgs, id=f'b{len(out)}'))
    return out

class Counting:
    "Wrap a collator and record (all tokens, assistant tokens, padded tokens) of every batch it makes."
    def __init__(self, inner): self.inner, self.counts = inner, []
    def __call__(self, feats):
        b = self.inner(feats)
        lab = b['labels']
        n_all = int(b['attention_mask'].sum()) if 'attention_mask' in b else int((lab.new_ones(lab.shape)).sum())
        self.counts.append((n_all, int((lab[:, 1:] != -100).sum()), lab.numel()))
        return b

def worker(name:str, steps:int, warmup:int, threads:int, batch:int, max_tokens:int)->dict:
    import torch
    torch.set_num_threads(threads)
    from transformers import Trainer, TrainingArguments, TrainerCallback, set_seed
    from convchat.models import load_model
    from convchat.data import save_conversations
    from convchat.tokenization import build_dataset, DataCollator, ensure_chat_template
    import convchat.train as T
    kind, precision, extra = CONFIGS[name]
    tmp = Path(tempfile.mkdtemp())
    from convchat.models import load_tokenizer
    tok = load_tokenizer('default')
    ensure_chat_template(tok)
    data = save_conversations(bench_conversations(batch*(steps+warmup), max_tokens, tok), tmp/'bench.json')
    times, cpu, losses = [], [], []
    class Clock(TrainerCallback):   # wall time, and the CPU time of this process (less sensitive to other jobs on a shared machine)
        def on_step_end(self, args, state, control, **kw): times.append(time.perf_counter()); cpu.append(time.process_time())
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and 'loss' in logs: losses.append(logs['loss'])
    set_seed(0)
    if kind == 'plain':   # what a user of transformers writes: Trainer, the model's own loss, dynamic padding
        from convchat.data import load_conversations
        model, tok = load_model('default')
        ds, _ = build_dataset(load_conversations(data), tok, 1024, progress=False)
        coll = Counting(DataCollator(tok))
        args = TrainingArguments(output_dir=str(tmp/'ck'), per_device_train_batch_size=batch, max_steps=steps+warmup,
                                 learning_rate=1e-4, lr_scheduler_type='cosine', warmup_ratio=0.05, optim='adamw_torch_fused',
                                 bf16=precision == 'bf16', use_cpu=True, logging_steps=1, save_strategy='no', report_to='none',
                                 disable_tqdm=True, seed=0, remove_unused_columns=False)
        Trainer(model=model, args=args, train_dataset=ds, data_collator=coll, callbacks=[Clock()]).train()
    else:                 # convchat's train(), exactly as a user calls it, with its collator counted
        made = []
        class C(Counting):
            def __init__(self, *a, **k): super().__init__(DataCollator(*a, **k)); made.append(self)
        T.DataCollator = C
        T.train(data, tmp/'out', precision=precision, max_steps=steps+warmup, eval_fraction=0, batch_size=batch,
                max_length=1024, progress=False, callbacks=[Clock()], seed=0, **extra)
        coll = made[0]
    import shutil; shutil.rmtree(tmp, ignore_errors=True)    # the trained model (~0.5 GB) is not needed
    c = coll.counts[:len(times)]
    dt = times[-1] - times[warmup-1]                     # the measured steps, after `warmup` steps
    meas = c[warmup:len(times)]
    n_all, n_lab, n_pad = (sum(x[i] for x in meas) for i in range(3))
    return dict(name=name, trainer=kind, precision=precision, steps=len(meas), seconds_per_step=dt/len(meas),
                tokens_per_s=n_all/dt, assistant_tokens_per_s=n_lab/dt, tokens_per_cpu_s=n_all/(cpu[-1] - cpu[warmup-1]), padded_tokens_per_step=n_pad/len(meas),
                tokens_per_step=n_all/len(meas), peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20,
                losses=losses)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=8, help='measured steps per run (with --warmup, 10 or more: convchat compiles its blocks, as in a real run)')
    p.add_argument('--warmup', type=int, default=2, help='steps before measuring')
    p.add_argument('--repeats', type=int, default=1, help='interleaved rounds over all configurations')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--max-tokens', type=int, default=256, help='longest benchmark conversation in tokens')
    p.add_argument('--configs', default=','.join(CONFIGS), help='comma-separated configuration names')
    p.add_argument('--before', default='main', help="git ref whose convchat the 'before' configurations run")
    p.add_argument('--name', default='train', help='results/<name>.json and .md')
    p.add_argument('--worker', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print('RESULT ' + json.dumps(worker(a.worker, a.steps, a.warmup, a.threads, a.batch, a.max_tokens)), flush=True); return
    names = [n.strip() for n in a.configs.split(',')]
    before = Path(tempfile.mkdtemp())/'before'
    if any(CONFIGS[n][0] == 'before' for n in names):   # convchat as it was at `--before`, imported instead of the worktree's
        before.mkdir(parents=True)
        subprocess.run(f'git archive {a.before} convchat | tar -x -C {before}', shell=True, check=True, cwd=HERE.parent)
    runs, t0 = [], time.time()
    for r in range(a.repeats):
        for n in names:
            cmd = [sys.executable, __file__, '--worker', n, '--steps', str(a.steps), '--warmup', str(a.warmup),
                   '--threads', str(a.threads), '--batch', str(a.batch), '--max-tokens', str(a.max_tokens)]
            env = {**os.environ, 'TOKENIZERS_PARALLELISM': 'false', 'PYTHONWARNINGS': 'ignore'}
            if CONFIGS[n][0] == 'before': env['PYTHONPATH'] = os.pathsep.join([str(before), env.get('PYTHONPATH', '')])
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
            if not line: sys.exit(f"{n} failed:\n{out.stderr[-3000:]}")
            res = json.loads(line[-1][7:]); res['round'] = r; runs.append(res)
            print(f"[{time.time()-t0:5.0f} s] {n:24s} {res['tokens_per_s']:7.0f} tok/s  {res['assistant_tokens_per_s']:6.0f} assistant tok/s  "
                  f"{res['seconds_per_step']:.2f} s/step  {res['peak_rss_gb']:.2f} GB", flush=True)
    import shutil; shutil.rmtree(before.parent, ignore_errors=True)
    summary = {}
    for n in names:
        rs = [x for x in runs if x['name'] == n]
        summary[n] = {k: (sum(v)/len(v) if (v := [x[k] for x in rs if k in x]) else None)
                      for k in ('tokens_per_s', 'assistant_tokens_per_s', 'tokens_per_cpu_s', 'seconds_per_step', 'peak_rss_gb',
                                'tokens_per_step', 'padded_tokens_per_step')}
    base = {'fp32': summary.get('plain Trainer fp32'), 'bf16': summary.get('plain Trainer bf16')}
    ref = summary.get('plain Trainer fp32')
    for n, s in summary.items():   # ratios within each round (the machine is shared), then averaged
        rs = [x for x in runs if x['name'] == n]
        rat = [x['tokens_per_s']/b['tokens_per_s'] for x in rs for b in runs if b['name'] == 'plain Trainer fp32' and b['round'] == x['round']]
        s['speedup_vs_plain_fp32'] = sum(rat)/len(rat) if rat else None
        rc = [x['tokens_per_cpu_s']/b['tokens_per_cpu_s'] for x in rs for b in runs
              if b['name'] == 'plain Trainer fp32' and b['round'] == x['round'] and 'tokens_per_cpu_s' in x and 'tokens_per_cpu_s' in b]
        s['cpu_speedup_vs_plain_fp32'] = sum(rc)/len(rc) if rc else None
    import torch, transformers
    meta = dict(machine=platform.processor() or platform.machine(), cpu_count=os.cpu_count(), threads=a.threads, batch=a.batch,
                max_tokens=a.max_tokens, steps=a.steps, warmup=a.warmup, repeats=a.repeats, torch=torch.__version__,
                transformers=transformers.__version__, model='SmolLM2-135M-Instruct (default)', wall_s=round(time.time()-t0),
                date=time.strftime('%Y-%m-%d'), note='shared machine: other jobs ran at the same time; compare ratios within a round')
    rows = [dict(name=n, **s) for n, s in summary.items()]
    res = dict(title='Training throughput',
               intro=(f"SmolLM2-135M-Instruct, batch {a.batch} x up to {a.max_tokens} tokens, {a.steps} measured steps after {a.warmup}, "
                      f"{a.repeats} interleaved round(s), {meta['date']}. Tokens/s counts real (non-padding) tokens; assistant tokens "
                      "are the ones with a label. vs plain fp32: the ratio to the plain Trainer in fp32 within each round, averaged; "
                      "(CPU time): the same ratio of tokens per CPU-second of the process, which other jobs on a shared machine disturb less."),
               reproduce=(f"{'LD_PRELOAD=/tmp/avx2/cpuidmask.so ' if 'cpuidmask' in os.environ.get('LD_PRELOAD', '') else ''}"
                          f"python benchmarks/train_bench.py --repeats {a.repeats} --steps {a.steps} --configs '{a.configs}' --name {a.name}"),
               machine=dict(machine_info(a.threads), note='shared: compare ratios'), meta=meta, summary=summary, runs=runs,
               tables=[dict(columns=[column('name', 'configuration'), column('tokens_per_s', 'tokens/s', '{:.0f}', True),
                                     column('assistant_tokens_per_s', 'assistant tokens/s', '{:.0f}'),
                                     column('seconds_per_step', 's/step', '{:.2f}'), column('peak_rss_gb', 'peak RSS (GB)', '{:.2f}'),
                                     column('speedup_vs_plain_fp32', 'vs plain fp32', '{:.2f}x', True),
                                     column('tokens_per_cpu_s', 'tokens per CPU-second', '{:.0f}'),
                                     column('cpu_speedup_vs_plain_fp32', 'vs plain fp32 (CPU time)', '{:.2f}x', True)], rows=rows)])
    print(write_result(a.name, res).read_text())

if __name__ == '__main__': main()
