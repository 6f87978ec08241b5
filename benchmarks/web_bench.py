"""Decode speed of the model in the browser (`convchat convert --format web`) against `convchat chat` on the same graph.

    python benchmarks/web_bench.py [--web-dir DIR] [--onnx-dir DIR] [--tokens 128] [--reps 3] [--work /tmp/convchat-web-bench]

The default model is exported with `convchat.web.export_web` (8-bit weights behind the gate) into `--work` (or `--web-dir`
is used as it is). Headless Chromium (Debian's `chromium`) opens the folder from `python -m http.server`, and the page
answers one question of the example data, greedy with the default repetition penalty, up to `--tokens` tokens; `web.js`
measures tokens per second after the first token, as `Generation.decode_tokens_per_s` does. ONNX Runtime Web runs
single-threaded there (no cross-origin isolation from a plain static server) on WebAssembly (headless Chromium has no
WebGPU adapter). `convchat chat`'s runtime (`ChatModel`) answers the same messages on the same graph (the web folder's
`model/`) with 1 thread and with every core, and on `--onnx-dir` (a `convchat convert` folder: the fused 8-bit graph) when
given. Each contender runs `--reps` times, interleaved; the best run is reported.

Results: benchmarks/results/web.json and web.md.
"""
import argparse, json, os, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from benchlib import machine_info, column, write_result

def browser_runs(web:Path, messages, tokens:int, reps:int)->list:
    "Decode tokens/s and reply length of each of `reps` replies in headless Chromium."
    from convchat.testing import Browser, StaticServer, wait_until
    out = []
    with StaticServer(web) as srv:
        b = Browser(srv.url)
        try:
            assert wait_until(lambda: b.js("document.documentElement.dataset.model || ''") in ('ready', 'error'), 300), 'the model did not load'
            assert b.js("document.documentElement.dataset.model") == 'ready', b.js("document.querySelector('#status').textContent")
            device = b.js("document.documentElement.dataset.device")
            for _ in range(reps):
                b.click('#clear'); b.js(f"document.querySelector('#max-tokens').value = '{tokens}'")
                b.type_into('#input', messages[-1]['content']); b.click('#send')
                done = lambda: b.js("(d => d ? d.dataset.state : '')(document.querySelector('#messages .msg.assistant:last-child'))") in ('done', 'error')
                assert wait_until(done, 900), 'no reply'
                meta = b.js("document.querySelector('#messages .msg.assistant:last-child .meta').textContent")
                out.append(dict(tps=float(b.js("document.documentElement.dataset.decodeTps")), tokens=int(meta.split()[0]), device=device,
                                text=b.js("document.querySelector('#messages .msg.assistant:last-child').dataset.text")))
        finally: b.close()
    return out

def folded(model_dir:Path, dest:Path)->Path:
    "The web folder's model with its int8 weights folded into fp32 (`DequantizeLinear` constant-folded), as ONNX Runtime Web runs it."
    import shutil, onnxruntime as ort
    so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.add_session_config_entry('session.disable_quant_qdq', '1'); dest.mkdir(parents=True, exist_ok=True)
    so.optimized_model_filepath = str(dest/'model.onnx')
    ort.InferenceSession(str(model_dir/'onnx'/'model_quantized.onnx'), so, providers=['CPUExecutionProvider'])
    for n in ('config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'): shutil.copyfile(model_dir/n, dest/n)
    return dest

def chat_runs(model_dir:Path, messages, tokens:int, threads:int)->dict:
    from convchat.runtime import ChatModel, GenerationConfig
    m = ChatModel(model_dir, threads=threads, cache_bytes=0)
    m.generate(messages, GenerationConfig(max_new_tokens=4, temperature=0))                     # warm-up
    g = m.generate(messages, GenerationConfig(max_new_tokens=tokens, temperature=0))
    return dict(tps=g.decode_tokens_per_s, tokens=g.completion_tokens, text=g.text)

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--web-dir'); p.add_argument('--onnx-dir'); p.add_argument('--tokens', type=int, default=128)
    p.add_argument('--reps', type=int, default=3); p.add_argument('--work', default='/tmp/convchat-web-bench')
    a = p.parse_args()
    m = machine_info(None); print(f"CPU: {m['cpu']}, {m['cores']} cores, flags {' '.join(m['flags'])}", file=sys.stderr)
    web = Path(a.web_dir) if a.web_dir else None
    if web is None:
        from convchat.web import export_web
        web = export_web('default', Path(a.work)/'web', overwrite=True, progress=False)
    meta = json.loads((web/'convchat-web.json').read_text())
    from convchat.web import _PAGE_SRC
    convs = json.loads((_PAGE_SRC.parent/'example_conversations.json').read_text())
    messages = [next(m for m in convs[0]['messages'] if m['role'] == 'user')]
    cores = os.cpu_count()
    contenders = {'browser (WebAssembly, 1 thread)': None, 'convchat chat, same graph, 1 thread': (web/'model', 1),
                  f'convchat chat, same graph, {cores} threads': (web/'model', cores)}
    if meta['dtype'] == 'q8':
        contenders['convchat chat, int8 weights folded to fp32 as in the browser, 1 thread'] = (folded(web/'model', Path(a.work)/'folded'), 1)
    if a.onnx_dir: contenders[f'convchat chat, convert default graph, {cores} threads'] = (Path(a.onnx_dir), cores)
    runs = {k: [] for k in contenders}
    for r in range(a.reps):
        for k, v in contenders.items():
            runs[k] += browser_runs(web, messages, a.tokens, 1) if v is None else [chat_runs(v[0], messages, a.tokens, v[1])]
            print(f'round {r+1}: {k}: {runs[k][-1]["tps"]:.1f} tokens/s ({runs[k][-1]["tokens"]} tokens)', file=sys.stderr)
    rows, browser_best = [], max(x['tps'] for x in runs['browser (WebAssembly, 1 thread)'])
    for k, rs in runs.items():
        best = max(rs, key=lambda x: x['tps'])
        graph = ('convert default (fused)' if 'convert default' in k else f"web folder's ({meta['dtype']}; int8 weights folded to fp32 at load)" if k.startswith('browser') else 'web folder\'s, folded' if 'folded' in k else
                 f"web folder's ({meta['dtype']}; DequantizeLinear + MatMul fused into MatMulNBits)" if meta['dtype'] == 'q8' else "web folder's (fp32)")
        rows.append(dict(contender=k, graph=graph, tps=best['tps'], tokens=best['tokens'], vs_browser=best['tps']/browser_best))
    ref = next((k for k in runs if 'folded' in k), 'convchat chat, same graph, 1 thread')
    same = runs['browser (WebAssembly, 1 thread)'][0]['text'] == runs[ref][0]['text']
    files = meta['files']
    res = dict(title='In the browser: decode speed of the web folder against convchat chat', reproduce='python benchmarks/web_bench.py',
               intro=(f"{meta['info']['id']} exported by `convchat convert --format web` ({meta['dtype']} graph, "
                      f"{files['model/onnx/' + ('model_quantized.onnx' if meta['dtype'] == 'q8' else 'model.onnx')]/1e6:.0f} MB; "
                      f"{meta['runtime']['package']} {meta['runtime']['version']}, ONNX Runtime Web on WebAssembly, "
                      f"{sum(b for n, b in files.items() if n.startswith('vendor/'))/1e6:.1f} MB of JavaScript and WebAssembly). "
                      f"Headless Chromium opened it from `python -m http.server`; the page answered the first question of the example "
                      f"data, greedy, up to {a.tokens} tokens. Best of {a.reps} runs each, interleaved."),
               machine=machine_info(None), settings=dict(tokens=a.tokens, reps=a.reps, chromium=os.popen('chromium --version 2>/dev/null').read().strip()),
               tables=[dict(title='Decode speed', columns=[column('contender', 'Contender'), column('graph', 'Graph'),
                            column('tps', 'Decode tokens/s', '{:.1f}', chart=True), column('tokens', 'Reply tokens'),
                            column('vs_browser', 'x browser', '{:.2f}')], rows=rows)],
               notes=[f"The browser's greedy reply {'equals' if same else 'differs from'} `{ref}`'s. The browser computes with the 8-bit weights in fp32 "
                      "(web.js folds the DequantizeLinear nodes when it loads the graph); ONNX Runtime on the host fuses them with their MatMul into its "
                      "8-bit MatMulNBits kernel, which also rounds the activations, so its greedy reply on the unfolded file may part from the browser's.",
                      "ONNX Runtime Web's threads need a cross-origin isolated page (COOP/COEP headers), which a plain static server does not send: "
                      "the browser row is single-threaded, so the 1-thread convchat chat row is the like-for-like comparison.",
                      "Headless Chromium here has no GPU, so WebGPU was not measured."],
               raw={k: [{kk: vv for kk, vv in x.items() if kk != 'text'} for x in v] for k, v in runs.items()})
    print(write_result('web', res).read_text())

if __name__ == '__main__': main()
