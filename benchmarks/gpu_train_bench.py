"""GPU training throughput: convchat's trainer against a plain transformers `Trainer`, random-weight models, bf16, single GPU.

Models are built from a config with random weights (nothing is downloaded): SmolLM2-135M's own config, and a ~1B model
(SmolLM2-1.7B's shape cut to 14 layers, 1.04B parameters). Each size runs the plain `Trainer` (the model's own loss over
every position, dynamic padding, fused AdamW) and convchat's `ConvchatTrainer` with `training_args` and `DataCollator`
as `convchat.train.train` builds them, each in eager mode and with `torch_compile=True`. All runs are in one process
(one import, one CUDA context), one after another; peak memory is reset before each.

    python benchmarks/gpu_train_bench.py                       # on a GPU: 135m and 1b, results/train_gpu.json+md
    python benchmarks/gpu_train_bench.py --sizes tiny --steps 2 --warmup 1 --results /tmp/x   # a CPU smoke test

The data are synthetic multi-turn examples: random token ids, alternate user and assistant turns, labels only on the
assistant turns (about half of the tokens), lengths uniform between a third of `--max-tokens` and `--max-tokens`.
Tokens/s counts real (non-padding) tokens.
"""
from __future__ import annotations
import argparse, gc, json, os, sys, tempfile, time, traceback
from pathlib import Path
from benchlib import machine_info, column, write_result

HERE = Path(__file__).resolve().parent
SIZES = {   # name: changes to the base config (SmolLM2-135M's)
    'tiny': dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    '135m': {},
    '1b': dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=14, num_attention_heads=32, num_key_value_heads=32,
               head_dim=64),
}

def examples(n:int, max_tokens:int, vocab:int, seed:int=0)->list[dict]:
    "`n` synthetic chat examples: random ids in 2-4 turns each of user then assistant; labels on the assistant turns only."
    import random
    rng, out = random.Random(seed), []
    for _ in range(n):
        T = rng.randint(max_tokens//3, max_tokens)
        cuts = sorted(rng.sample(range(8, T - 8), 2*rng.randint(1, 2) - 1)) + [T]
        ids = [rng.randrange(3, vocab) for _ in range(T)]
        labels, start = [], 0
        for i, c in enumerate(cuts):
            labels += ids[start:c] if i % 2 else [-100]*(c - start); start = c
        out.append(dict(input_ids=ids, attention_mask=[1]*T, labels=labels))
    return out

def build_model(config_dir:Path, size:str, device:str):
    "A random-weight causal LM from `config_dir`'s config changed as `SIZES[size]` says, in fp32 on `device`."
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, set_seed
    cfg = AutoConfig.from_pretrained(config_dir)
    for k, v in SIZES[size].items(): setattr(cfg, k, v)
    set_seed(0)
    with torch.device(device): m = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation='sdpa')
    return m

def run(kind:str, compile:bool, size:str, a, tok, data:list)->dict:
    "Train `steps + warmup` steps with one configuration; tokens/s over the steps after `warmup`, peak GPU memory."
    import torch
    from transformers import Trainer, TrainingArguments, TrainerCallback, DataCollatorForSeq2Seq
    cuda = torch.cuda.is_available()
    dev = 'cuda' if cuda else 'cpu'
    model = build_model(a.config_dir, size, dev)
    n_params = sum(p.numel() for p in model.parameters())
    tmp = Path(tempfile.mkdtemp())
    times, losses, counts = [], [], []
    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if cuda: torch.cuda.synchronize()
            times.append(time.perf_counter()); print(f'  step {state.global_step} at {times[-1]-t0:.1f} s', flush=True)
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and 'loss' in logs: losses.append(logs['loss'])
    def counted(coll):
        def f(feats):
            b = coll(feats)
            counts.append(int(b['attention_mask'].sum()) if 'attention_mask' in b else b['input_ids'].numel()); return b
        return f
    steps = a.steps + a.warmup
    precision = 'bf16' if cuda else 'fp32'
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if kind == 'plain':
        args = TrainingArguments(output_dir=str(tmp), per_device_train_batch_size=a.batch, max_steps=steps, learning_rate=1e-4,
                                 lr_scheduler_type='cosine', warmup_ratio=0.05, optim='adamw_torch_fused', bf16=precision == 'bf16',
                                 tf32=True if cuda else None, use_cpu=not cuda, torch_compile=compile, logging_steps=1,
                                 save_strategy='no', report_to='none', disable_tqdm=True, seed=0, remove_unused_columns=False)
        coll = DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, return_tensors='pt')
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=counted(coll), callbacks=[Clock()])
    else:
        from convchat.recipe import make_config
        from convchat.trainer import ConvchatTrainer
        from convchat.train import training_args
        from convchat.tokenization import DataCollator
        cfg = make_config(batch_size=a.batch, max_steps=steps, torch_compile=compile, eval_fraction=0, save_every=None, seed=0)
        args = training_args(cfg, tmp, has_eval=False, progress=False, precision=precision)
        coll = DataCollator(tok, packing=cfg.packing, model=model if cfg.packing else None)
        trainer = ConvchatTrainer(model=model, args=args, train_dataset=data, processing_class=tok, data_collator=counted(coll),
                                  callbacks=[Clock()], label_logits_only=cfg.label_logits_only)
    trainer.train()
    w = a.warmup
    dt = times[-1] - times[w - 1]
    res = dict(size=size, params_m=n_params/1e6, trainer=kind, compile=compile, precision=precision,
               name=f"{size} {'plain Trainer' if kind == 'plain' else 'convchat'}{' + compile' if compile else ''}",
               steps=len(times) - w, warmup_s=times[w - 1] - t0, seconds_per_step=dt/(len(times) - w),
               tokens_per_s=sum(counts[w:len(times)])/dt, tokens_per_step=sum(counts[w:len(times)])/(len(times) - w),
               peak_mem_gb=torch.cuda.max_memory_allocated()/2**30 if cuda else None,
               label_logits_only=getattr(trainer, 'label_logits_only', False), loss_first=losses[0], loss_last=losses[-1],
               loss_mean=sum(losses)/len(losses))
    del trainer, model; gc.collect()
    os.environ.pop('ACCELERATE_DYNAMO_BACKEND', None)   # TrainingArguments(torch_compile=True) sets it: later eager runs would compile
    import torch._dynamo; torch._dynamo.reset()
    if cuda: torch.cuda.empty_cache()
    return res

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config-dir', type=Path, default=None, help="folder with SmolLM2-135M's config.json and tokenizer (default: convchat's cached default model)")
    p.add_argument('--sizes', default='135m,1b')
    p.add_argument('--configs', default='plain,convchat,plain+compile,convchat+compile')
    p.add_argument('--steps', type=int, default=20, help='measured steps per run')
    p.add_argument('--warmup', type=int, default=5, help='steps before measuring (compilation happens here)')
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--batch-1b', type=int, default=8)
    p.add_argument('--max-tokens', type=int, default=1024)
    p.add_argument('--static', action='store_true', help='let torch.compile specialise on the first shapes (default: dynamic from the start)')
    p.add_argument('--results', type=Path, default=HERE/'results')
    p.add_argument('--name', default='train_gpu')
    a = p.parse_args()
    import torch, transformers
    from transformers import AutoTokenizer
    import torch._dynamo
    if not a.static: torch._dynamo.config.assume_static_by_default = False   # one compilation for batches of any length
    if a.config_dir is None:
        from convchat.models import resolve_model
        a.config_dir = resolve_model('default')
    tok = AutoTokenizer.from_pretrained(a.config_dir)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    print(f"GPU: {gpu}; torch {torch.__version__}; transformers {transformers.__version__}", flush=True)
    rows, t0 = [], time.time()
    for size in a.sizes.split(','):
        bs = a.batch_1b if size == '1b' else a.batch
        data = examples(bs*(a.steps + a.warmup), a.max_tokens, tok.vocab_size if size != 'tiny' else 1000)
        for c in a.configs.split(','):
            kind, compile = c.split('+')[0], c.endswith('+compile')
            a2 = argparse.Namespace(**{**vars(a), 'batch': bs})
            try: r = run(kind, compile, size, a2, tok, data)
            except Exception as e:
                traceback.print_exc(); r = dict(size=size, trainer=kind, compile=compile, name=f'{size} {c}', error=f'{type(e).__name__}: {e}'[:300])
                gc.collect(); torch.cuda.empty_cache() if torch.cuda.is_available() else None
            r['batch'] = bs; rows.append(r)
            base = next((x for x in rows if x['size'] == size and x['trainer'] == 'plain' and not x['compile'] and 'tokens_per_s' in x), None)
            if base and 'tokens_per_s' in r: r['speedup_vs_plain'] = r['tokens_per_s']/base['tokens_per_s']
            print(f"[{time.time()-t0:5.0f} s] {json.dumps(r)}", flush=True)
            save(a, rows, gpu, t0)

def save(a, rows:list, gpu:str|None, t0:float):
    "Write what has been measured so far (a run cut short still leaves its finished rows)."
    import torch, transformers
    res = dict(title='GPU training throughput',
               intro=(f"Random-weight models from SmolLM2-135M's config and a ~1B config (SmolLM2-1.7B's shape, 14 layers), bf16 autocast, "
                      f"fused AdamW, synthetic chat examples of {a.max_tokens//3} to {a.max_tokens} tokens with labels on the assistant turns, "
                      f"batch {a.batch} (1B: {a.batch_1b}), {a.steps} measured steps after {a.warmup} (compilation happens in those). "
                      "vs plain: tokens/s over the plain Trainer's in eager mode on the same model. warmup: seconds to the end of the "
                      f"warmup steps, compilation included. GPU: {gpu or 'none (CPU smoke test)'}."),
               reproduce='python benchmarks/gpu_train_bench.py',
               machine=dict(machine_info(), gpu=gpu, torch=torch.__version__, transformers=transformers.__version__),
               settings=dict(steps=a.steps, warmup=a.warmup, batch=a.batch, batch_1b=a.batch_1b, max_tokens=a.max_tokens,
                             wall_s=round(time.time() - t0)),
               tables=[dict(columns=[column('name', 'configuration'), column('params_m', 'params (M)', '{:.0f}'),
                                     column('tokens_per_s', 'tokens/s', '{:.0f}', True), column('speedup_vs_plain', 'vs plain', '{:.2f}x', True),
                                     column('peak_mem_gb', 'peak GPU memory (GB)', '{:.1f}'), column('seconds_per_step', 's/step', '{:.3f}'),
                                     column('warmup_s', 'warmup (s)', '{:.0f}'), column('loss_mean', 'mean loss', '{:.3f}'),
                                     column('error', 'error')],
                            rows=rows)])
    write_result(a.name, res, a.results)

if __name__ == '__main__': main()
