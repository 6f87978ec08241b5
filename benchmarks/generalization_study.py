"""Generalization study: which trainer defaults teach SmolLM2-135M-Instruct the facts of a small conversation set so that it
answers reworded questions (paraphrase recall) without losing the questions it was trained on (verbatim recall).

Each candidate is a set of `TrainConfig` options (and `TrainingArguments` fields such as `neftune_noise_alpha`) applied on
top of the old defaults (8 epochs, learning rate 1e-4, cosine, 5% warmup, no weight decay). For every data set and
candidate: fine-tune the real default model, then score its greedy answers to the data set's probes with
`convchat.report.probe_recall`. Two data sets: the example bakery conversations (convchat/assets/example_conversations.json
with example_probes.json) and a second set with another persona and other facts (ferry_conversations.json and
ferry_conversations.probes.json).
Each run is cached in `--work`, so a screen can be extended one candidate at a time; `--fresh` reruns.

    PYTHONPATH=. python benchmarks/generalization_study.py [--data example,ferry] [--candidates NAME,...] [--work /tmp/generalization]
    PYTHONPATH=. flock /tmp/convchat-bench.lock python benchmarks/generalization_study.py --speed   # step time, side by side

Writes benchmarks/results/generalization.json and .md."""
import argparse, json, os, shutil, time
from pathlib import Path
from benchlib import column, write_result, machine_info

ASSETS = Path(__file__).parent.parent/'convchat'/'assets'
DATA = dict(example=(ASSETS/'example_conversations.json', ASSETS/'example_probes.json'),
            ferry=(ASSETS/'ferry_conversations.json', ASSETS/'ferry_conversations.probes.json'))
OLD = dict(epochs=8, learning_rate=1e-4, lr_scheduler='cosine', warmup_ratio=0.05, weight_decay=0.0,
           neftune_noise_alpha=None)      # the defaults before this study
CANDIDATES = {                                   # name: changes to OLD
    'old defaults': {},
    'lr 2e-4': dict(learning_rate=2e-4),
    'NEFTune 5': dict(neftune_noise_alpha=5.0),
    'NEFTune 5 + lr 2e-4': dict(neftune_noise_alpha=5.0, learning_rate=2e-4),
    'label smoothing 0.1': dict(label_smoothing_factor=0.1),
    'weight decay 0.1': dict(weight_decay=0.1),
    'lr 2e-4 + 6 epochs': dict(learning_rate=2e-4, epochs=6),
    'lr 3e-4 + 6 epochs': dict(learning_rate=3e-4, epochs=6),
    'NEFTune 5 + lr 2e-4 + 6 epochs': dict(neftune_noise_alpha=5.0, learning_rate=2e-4, epochs=6),
}
CHOSEN = 'NEFTune 5 + lr 2e-4'                   # what TrainConfig's defaults now are
SPEED_CMD = ("PYTHONPATH=. flock /tmp/convchat-bench.lock python benchmarks/generalization_study.py --speed "
             "--candidates 'old defaults,NEFTune 5 + lr 2e-4,label smoothing 0.1'")
NOTES = ['Every candidate trains the same number of optimizer steps (8 epochs of batch 4, except where epochs change); NEFTune adds one '
         'uniform noise draw on the embedding output per step, and label smoothing turns off the label-logits loss path.',
         'Runs are deterministic (seed 42): the candidates in both tables gave the same eval loss in both runs.',
         'CPU seconds of one candidate varied by up to 10% between repeats under other jobs (old defaults 65-68 s, new defaults 65-72 s); '
         f'the side-by-side step timing (`{SPEED_CMD}`) was not run to completion: under a load average near 10 a step took 90 s.']

def options(name:str)->dict:
    "The `train` keyword arguments of candidate `name`: TrainConfig fields, and other TrainingArguments fields in `trainer_args`."
    from convchat.recipe import TrainConfig
    from dataclasses import fields
    ch = CANDIDATES[name]
    ours = {f.name for f in fields(TrainConfig)}
    opts = {**OLD, **{k: v for k, v in ch.items() if k in ours}}
    extra = {k: v for k, v in ch.items() if k not in ours}
    return {**opts, 'trainer_args': extra} if extra else opts

def recall(folder, probes:Path)->dict:
    "Verbatim and paraphrase recall of the model in `folder` (a PyTorch folder, or 'default' for the base model)."
    from convchat.report import load_probes, probe_recall
    r = probe_recall(folder, load_probes(probes))
    return dict(verbatim=list(r['verbatim']), paraphrase=list(r['paraphrase']), rows=r['rows'])

def run_one(data:str, name:str, work:Path, fresh:bool=False, threads:int=None, keep:bool=False)->dict:
    "Fine-tune on `data` with candidate `name` and score it (cached in `work/data/name.json`)."
    from convchat.train import train
    cache = cache_file(work, data, name)
    if cache.exists() and not fresh: return json.loads(cache.read_text())
    conv, probes = DATA[data]
    out, opts = cache.with_suffix(''), options(name)
    t0, c0 = time.time(), time.process_time()
    r = train(conv, out, overwrite=True, progress=False, save_every=None, num_threads=threads, **opts)
    wall, cpu = time.time()-t0, time.process_time()-c0
    steps = max((h.get('step', 0) for h in r.history), default=0)
    res = dict(data=data, candidate=name, options=opts, config=r.record['config'], steps=steps, wall_s=round(wall, 1), cpu_s=round(cpu, 1),
               train_runtime_s=r.metrics.get('train_runtime'), eval_loss=r.metrics.get('eval_loss'), **recall(out, probes))
    cache.parent.mkdir(parents=True, exist_ok=True); cache.write_text(json.dumps(res, indent=1, default=str))
    if not keep: shutil.rmtree(out, ignore_errors=True)
    return res

def base_recall(data:str, work:Path)->dict:
    "The base model's recall on `data`'s probes (cached)."
    cache = work/data/'base.json'
    if cache.exists(): return json.loads(cache.read_text())
    res = recall('default', DATA[data][1]); cache.parent.mkdir(parents=True, exist_ok=True); cache.write_text(json.dumps(res, indent=1))
    return res

def step_timer():
    "A `TrainerCallback` that records the wall and process CPU seconds of every optimizer step."
    from transformers import TrainerCallback
    class StepTimer(TrainerCallback):
        def __init__(self): self.steps = []
        def on_step_begin(self, *a, **k): self.t = (time.time(), time.process_time())
        def on_step_end(self, *a, **k): self.steps.append((time.time()-self.t[0], time.process_time()-self.t[1]))
    return StepTimer()

def speed(work:Path, names:list, data:str='example', steps:int=3, rounds:int=2)->list:
    "Seconds per optimizer step of each candidate (median of the steps after the first), taking turns in one process."
    import statistics
    from convchat.train import train
    t = {n: [] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            cb = step_timer()
            train(DATA[data][0], work/'speed', overwrite=True, progress=False, save_every=None, eval_fraction=0, callbacks=[cb],
                  **{**options(n), 'max_steps': steps})
            t[n] += cb.steps[1:]
            print(f"round {r} {n:32} " + ' '.join(f'{w:.2f}s ({c:.2f} CPU)' for w, c in cb.steps[1:]) +
                  f"  load {os.getloadavg()[0]:.1f}", flush=True)
    shutil.rmtree(work/'speed', ignore_errors=True)
    med = {n: (statistics.median(w for w, _ in t[n]), statistics.median(c for _, c in t[n])) for n in names}
    old = med[names[0]]
    return [dict(candidate=n, s_per_step=round(med[n][0], 2), cpu_s_per_step=round(med[n][1], 2), vs_old=round(med[n][0]/old[0], 2),
                 cpu_vs_old=round(med[n][1]/old[1], 2), steps=t[n]) for n in names]

def frac(hn)->str: return f"{hn[0]}/{hn[1]}"

def cache_file(work:Path, data:str, name:str)->Path: return work/data/(name.replace(' ', '_').replace(',', '') + '.json')

def changed(opts:dict)->str:
    "The options of a run that differ from OLD, as text."
    flat = {**{k: v for k, v in opts.items() if k != 'trainer_args'}, **opts.get('trainer_args', {})}
    return ', '.join(f'{k}={v}' for k, v in flat.items() if OLD.get(k) != v) or '-'

def row(d:str, r:dict)->dict:
    "A table row of run `r` on data set `d`."
    name = r['candidate'] + (' (new defaults)' if r['candidate'] == CHOSEN else '')
    return dict(data=d, candidate=name, options=changed(r['options']), verbatim=frac(r['verbatim']), paraphrase=frac(r['paraphrase']),
                steps=r['steps'], eval_loss=r['eval_loss'], cpu_s=r['cpu_s'])

def rows_of(work:Path, names:list, datas:list)->tuple:
    "The cached runs in `work` and their table rows, the base model first."
    runs = {d: [json.loads(f.read_text()) for n in names if (f := cache_file(work, d, n)).exists()] for d in datas}
    base = {d: json.loads((work/d/'base.json').read_text()) for d in datas if (work/d/'base.json').exists()}
    rows = [dict(data=d, candidate='base model (no training)', verbatim=frac(b['verbatim']), paraphrase=frac(b['paraphrase']))
            for d, b in base.items()] + [row(d, r) for d in datas for r in runs[d]]
    return runs, base, rows

def write(work:Path, out:Path, names:list, datas:list, screen:Path=None):
    "Collect the cached runs (the screen's and the speed run's, if any) into results/generalization.{json,md}."
    runs, base, rows = rows_of(work, names, datas)
    cols = [column('data', 'data'), column('candidate', 'candidate'), column('options', 'changed options'), column('verbatim', 'verbatim'),
            column('paraphrase', 'paraphrase'), column('steps', 'steps'), column('eval_loss', 'eval loss', '{:.3f}'),
            column('cpu_s', 'CPU s', '{:.0f}')]
    tables = [dict(title='Probe recall after fine-tuning', columns=cols, rows=rows,
                   note=('Recall: probes whose greedy reply (64 new tokens at most) says an expected answer '
                         '(`convchat.report.probe_recall`). CPU s: process CPU seconds of the fine-tune, a measure that other jobs '
                         'on the machine disturb less than wall time.'))]
    if screen:
        tables.append(dict(title='First screen', columns=cols, rows=rows_of(screen, names, datas)[2],
                           note=('Earlier runs, scored with first drafts of both probe files (the example one written before '
                                 '`example_probes.json` existed) and a substring match instead of `probe_recall`.')))
    if (sp := work/'speed.json').exists():
        sp = json.loads(sp.read_text())
        tables.append(dict(title='Training speed, side by side', rows=[{k: v for k, v in r.items() if k != 'rounds'} for r in sp['rows']],
                           columns=[column('candidate', 'candidate'), column('s_per_step', 's/step (median)', '{:.2f}'),
                                    column('vs_old', 'vs old defaults', '{:.2f}x'), column('cpu_s_per_step', 'CPU s/step', '{:.2f}'),
                                    column('cpu_vs_old', 'CPU vs old', '{:.2f}x')],
                           note=sp.get('note', '')))
    res = dict(title='Generalization study: trainer defaults chosen by probe recall', machine=machine_info(),
               intro=('SmolLM2-135M-Instruct (the default model) fine-tuned on each conversation set with each candidate, then asked the '
                      "set's probes: 10 questions as trained (verbatim) and 10 reworded (paraphrase), greedy. "
                      f"Candidates change the old defaults ({', '.join(f'{k}={v}' for k, v in OLD.items())})."),
               reproduce='PYTHONPATH=. python benchmarks/generalization_study.py', tables=tables, notes=NOTES,
               runs=runs, base=base)
    print('wrote', write_result(out.name, res, out.parent))

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default='example,ferry'); p.add_argument('--candidates', default=','.join(CANDIDATES))
    p.add_argument('--work', default='/tmp/generalization'); p.add_argument('--fresh', action='store_true')
    p.add_argument('--screen', default=None, help='a --work folder of a first screen, shown as a second table')
    p.add_argument('--write_only', action='store_true', help='write the results of the cached runs, train nothing')
    p.add_argument('--no_base', action='store_true', help="skip the base model's recall")
    p.add_argument('--keep', action='store_true', help='keep the fine-tuned models in --work')
    p.add_argument('--threads', type=int, default=None, help='torch threads per run (default: all cores)')
    p.add_argument('--speed', action='store_true', help='time the step of --candidates side by side instead')
    p.add_argument('--out', default=str(Path(__file__).parent/'results'/'generalization'))
    a = p.parse_args()
    work, names = Path(a.work), a.candidates.split(',')
    if a.speed:
        (work/'speed.json').parent.mkdir(parents=True, exist_ok=True)
        rows = speed(work, names)
        note = (f"{len(rows[0]['steps'])} steps each, the candidates taking turns in one process; median; SmolLM2-135M-Instruct, "
                f"batch 4 of the example conversations; vs old defaults: ratio of the medians. Reproduce: `{SPEED_CMD}`.")
        (work/'speed.json').write_text(json.dumps(dict(machine=machine_info(), rows=rows, note=note), indent=1)); return
    if a.write_only: return write(work, Path(a.out), names, a.data.split(','), a.screen and Path(a.screen))
    for d in a.data.split(','):
        b = base_recall(d, work) if not a.no_base else dict(verbatim='-', paraphrase='-')
        print(f"{d:8} base model                       verbatim {b['verbatim']}  paraphrase {b['paraphrase']}", flush=True)
        for n in names:
            r = run_one(d, n, work, a.fresh, a.threads, a.keep)
            print(f"{d:8} {n:32} verbatim {r['verbatim']}  paraphrase {r['paraphrase']}  steps {r['steps']}  "
                  f"{r['wall_s']} s (cpu {r['cpu_s']} s)  eval loss {r['eval_loss']}", flush=True)
    write(work, Path(a.out), names, a.data.split(','), a.screen and Path(a.screen))

if __name__ == '__main__': main()
