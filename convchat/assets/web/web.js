// The model in the browser, for the static folder `convchat convert --format web` writes: chat.js asks
// `window.convchatLocal` for its replies instead of POST v1/chat/completions. The tokenizer, the chat template
// and ONNX Runtime Web come from transformers.js (vendor/, copied at export: nothing is fetched from elsewhere);
// the decoding loop below is convchat's own (runtime.py): greedy or sampled, the repetition penalty over the
// last 64 tokens, the loop guard, the stop tokens, so that a greedy reply is the one `convchat chat` gives.
import {env, AutoTokenizer, AutoModelForCausalLM, Tensor} from '../vendor/transformers.min.js';

const here = new URL('../', import.meta.url);                  // the folder's root: index.html, model/, vendor/
env.allowRemoteModels = false; env.allowLocalModels = true; env.useBrowserCache = false;
env.localModelPath = here.href;
env.backends.onnx.wasm.wasmPaths = new URL('vendor/', here).href;
env.backends.onnx.wasm.proxy = false;
// threads need cross-origin isolation (COOP/COEP headers), which a plain static server does not send
env.backends.onnx.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

const $ = id => document.getElementById(id), root = document.documentElement;
const params = new URLSearchParams(location.search);
let tokenizer, model, meta;
const facts = fetch(new URL('convchat-web.json', here)).then(r => r.json()).then(m => (meta = m));

async function load() {
  await facts;
  const say = (t, was) => { const s = $('status'); if (s && (was === undefined || s.textContent === was)) s.textContent = t; };
  say('loading the model…');
  tokenizer = await AutoTokenizer.from_pretrained('model');
  const want = params.get('device') || (navigator.gpu && await navigator.gpu.requestAdapter().catch(() => null) ? 'webgpu' : 'wasm');
  for (const device of want === 'webgpu' ? ['webgpu', 'wasm'] : [want]) {
    try {
      // the int8 weights' DequantizeLinear nodes are constant-folded into fp32 weights when the session is made,
      // rather than dequantized again for every token
      model = await AutoModelForCausalLM.from_pretrained('model', {dtype: meta.dtype, device,
        session_options: {extra: {session: {disable_quant_qdq: '1'}}}});
      root.dataset.device = device; break;
    } catch (e) { if (device === 'wasm') throw e; console.warn(`WebGPU failed (${e.message}); using WebAssembly`); }
  }
  root.dataset.model = 'ready'; say('', 'loading the model…');
}
const ready = load().catch(e => { root.dataset.model = 'error'; $('status').textContent = 'The model did not load: ' + (e && e.message || e); throw e; });

// ---- choosing the next token, as convchat's `Row.choose` does
function choose(logits, seen, c) {
  const x = Float64Array.from(logits), p = c.repetition_penalty;
  if (p !== 1) for (const t of new Set(seen)) x[t] = x[t] > 0 ? x[t] / p : x[t] * p;
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  if (!c.temperature) return best;
  const idx = [...x.keys()].sort((a, b) => x[b] - x[a]), k = c.top_k > 0 ? Math.min(c.top_k, x.length) : x.length;
  let probs = idx.slice(0, k).map(i => Math.exp((x[i] - x[best]) / c.temperature)), sum = probs.reduce((a, b) => a + b, 0);
  probs = probs.map(q => q / sum);
  let n = probs.length;
  if (c.top_p < 1) { let mass = 0; for (n = 0; n < probs.length && mass < c.top_p; n++) mass += probs[n]; }
  let r = Math.random() * probs.slice(0, n).reduce((a, b) => a + b, 0);
  for (let i = 0; i < n; i++) if ((r -= probs[i]) <= 0) return idx[i];
  return idx[n - 1];
}
function looping(ids) {                                         // runtime.py's `ends_in_loop`: a block of up to 32 tokens, 4 times
  for (let p = 1; p <= Math.min(32, Math.floor(ids.length / 4)); p++) {
    if (ids[ids.length - 1] !== ids[ids.length - 1 - p]) continue;
    const n = p * Math.max(4, Math.ceil(16 / p));
    if (n <= ids.length && ids.slice(-n + p).every((t, i) => t === ids[ids.length - n + i])) return true;
  }
  return false;
}
const ints = a => new Tensor('int64', BigInt64Array.from(a, BigInt), [1, a.length]);

// ---- one reply, as the OpenAI chunks chat.js reads from the server
async function* stream(body, signal) {
  await ready;
  const c = {temperature: body.temperature || 0, top_p: body.top_p ?? 1, top_k: body.top_k || 0,
             repetition_penalty: body.repetition_penalty ?? meta.info.repetition_penalty};
  const prompt = tokenizer.apply_chat_template(body.messages, {add_generation_prompt: true, tokenize: false});
  const ids = tokenizer.encode(prompt, {add_special_tokens: false}), seen = ids.slice(), out = [];
  const budget = Math.min(body.max_tokens || meta.info.max_tokens, meta.info.context_length - ids.length);
  if (budget < 1) throw new Error(`the prompt has ${ids.length} tokens but the context holds ${meta.info.context_length}`);
  let past = null, input = ids, sent = '', finish = 'length';
  const t0 = performance.now(); let tFirst = null;
  while (out.length < budget) {
    if (signal && signal.aborted) throw new DOMException('stopped', 'AbortError');
    const o = await model.forward({input_ids: ints(input), attention_mask: ints(new Array(seen.length).fill(1)), past_key_values: past});
    const V = o.logits.dims[2], last = o.logits.data.subarray((input.length - 1) * V, input.length * V);
    past = model.getPastKeyValues(o, past);
    const t = choose(last, seen.slice(-meta.repeat_last_n), c);
    tFirst ??= performance.now();
    seen.push(t); out.push(t); input = [t];
    if (meta.eos_token_ids.includes(t)) { finish = 'stop'; break; }
    const text = tokenizer.decode(out, {skip_special_tokens: true}), end = text.replace(/\ufffd+$/, '').length;
    if (end > sent.length) { yield {choices: [{delta: {content: text.slice(sent.length, end)}, finish_reason: null}]}; sent = text.slice(0, end); }
    if (looping(out)) break;
  }
  const text = tokenizer.decode(out, {skip_special_tokens: true});
  if (text.length > sent.length) yield {choices: [{delta: {content: text.slice(sent.length)}, finish_reason: null}]};
  const secs = (performance.now() - (tFirst ?? t0)) / 1000;
  root.dataset.decodeTps = out.length > 1 ? ((out.length - 1) / secs).toFixed(2) : '';
  local.lastIds = out;                                          // the reply's token ids, for tests
  yield {choices: [{delta: {}, finish_reason: finish}], usage: {prompt_tokens: ids.length, completion_tokens: out.length}};
}

const local = window.convchatLocal = {ready, stream, info: async () => (await facts).info, lastIds: null};
