// The chat page of `convchat serve`: it talks to the server's own OpenAI-compatible API, streaming each reply.
// In the static folder of `convchat convert --format web`, web.js sets `window.convchatLocal`: the model runs in this tab instead.
(function () {
  'use strict';
  const $ = id => document.getElementById(id), md = window.convchatMarkdown, local = window.convchatLocal;
  const el = {messages: $('messages'), input: $('input'), send: $('send'), stop: $('stop'), regenerate: $('regenerate'),
              system: $('system'), temperature: $('temperature'), tempValue: $('temperature-value'), maxTokens: $('max-tokens'), penalty: $('repetition-penalty'),
              status: $('status'), model: $('model'), facts: $('facts'), theme: $('theme'), clear: $('clear'),
              keyDialog: $('key-dialog'), keyForm: $('key-form'), key: $('key'), keyError: $('key-error')};
  let history = [], controller = null, modelId = null;

  // ---- the API key: asked for only when the server answers 401, kept in this tab's sessionStorage only
  const apiKey = () => sessionStorage.getItem('convchat-api-key');
  function headers() {
    const h = {'Content-Type': 'application/json'}, k = apiKey();
    if (k) h.Authorization = 'Bearer ' + k;
    return h;
  }
  function askKey(message) {
    el.keyError.textContent = message || '';
    if (!el.keyDialog.open) el.keyDialog.showModal();
    el.key.focus();
  }
  el.keyForm.addEventListener('submit', () => { sessionStorage.setItem('convchat-api-key', el.key.value.trim()); el.key.value = ''; probe(); });

  async function probe() {                          // is the key (or no key) good? then name the model
    if (local) return;
    const r = await fetch('v1/models', {headers: headers()});
    if (r.status === 401) return askKey(apiKey() ? 'That key was refused; try again.' : '');
    if (r.ok) { modelId = (await r.json()).data[0].id; el.model.textContent = modelId; }
  }

  // ---- the model's facts, from GET /info (no key needed)
  const FACTS = [['id', 'Model'], ['context_length', 'Context'], ['graph', 'Graph'], ['bits', 'Bits'], ['architecture', 'Architecture'],
                 ['parameters', 'Parameters'], ['n_layers', 'Layers'], ['file_size', 'File size']];
  function fmt(k, v) {
    if (k === 'bits') return v ? `${v}-bit` : 'fp32';
    if (k === 'file_size') return `${(v / 2 ** 20).toFixed(1)} MiB`;
    if (typeof v === 'number') return v.toLocaleString('en');
    return String(v);
  }
  async function loadInfo() {
    const r = local ? null : await fetch('info');
    if (r && !r.ok) return;
    const info = local ? await local.info() : await r.json();
    el.facts.replaceChildren();
    for (const [k, label] of FACTS) {
      if (info[k] === undefined || (info[k] === null && k !== 'bits')) continue;
      const dt = document.createElement('dt'), dd = document.createElement('dd');
      dt.textContent = label; dd.textContent = fmt(k, info[k]);
      el.facts.append(dt, dd);
    }
    el.maxTokens.max = info.context_length;
    if (!el.maxTokens.dataset.touched) el.maxTokens.value = info.max_tokens;
    el.penalty.placeholder = `${info.repetition_penalty} (${local ? 'the' : "the server's"} default)`;
    el.model.textContent = modelId || info.id;
  }

  // ---- messages on the page
  function bubble(role, text) {
    const div = document.createElement('div'), content = document.createElement('div'), meta = document.createElement('div');
    div.className = `msg ${role}`; content.className = 'content'; meta.className = 'meta';
    div.append(content, meta);
    if (role === 'user') content.textContent = text;       // the user's own words, shown as typed
    else show(div, text);
    el.messages.append(div);
    el.messages.scrollTop = el.messages.scrollHeight;
    return div;
  }
  function show(div, text) {                                 // the reply as Markdown; its raw text kept in data-text
    div.dataset.text = text;
    div.querySelector('.content').innerHTML = md.render(text);
  }
  function busy(on) {
    el.send.disabled = on; el.stop.disabled = !on;
    el.regenerate.disabled = on || !history.length;
  }

  // ---- one streamed reply: POST v1/chat/completions with stream: true, read as server-sent events
  function request() {
    const sys = el.system.value.trim(), body = {messages: (sys ? [{role: 'system', content: sys}] : []).concat(history),
      stream: true, stream_options: {include_usage: true}, temperature: parseFloat(el.temperature.value)};
    const n = parseInt(el.maxTokens.value, 10);
    if (n > 0) body.max_tokens = n;
    const penalty = parseFloat(el.penalty.value);
    if (penalty > 0) body.repetition_penalty = penalty;
    if (modelId) body.model = modelId;
    return body;
  }
  async function* events(response) {                        // the JSON of each `data:` line, up to `[DONE]`
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const {value, done} = await reader.read();
      buf += decoder.decode(value || new Uint8Array(), {stream: !done});
      const lines = buf.split(/\r?\n/);
      buf = done ? '' : lines.pop();
      for (const line of lines) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') return;
        yield JSON.parse(data);
      }
      if (done) return;
    }
  }
  async function* served(signal) {                          // the server's chunks of one reply
    const r = await fetch('v1/chat/completions', {method: 'POST', headers: headers(), body: JSON.stringify(request()), signal});
    if (!r.ok) {
      const err = (await r.json().catch(() => ({}))).error || {};
      if (r.status === 401) askKey('The server wants an API key.');
      throw new Error(err.message || `HTTP ${r.status}`);
    }
    yield* events(r);
  }
  async function generate() {
    const div = bubble('assistant', ''), t0 = performance.now();
    div.dataset.state = 'streaming';
    controller = new AbortController(); busy(true); el.status.textContent = 'generating…';
    let text = '', finish = null, usage = null, frame = 0;
    try {
      for await (const ev of (local ? local.stream(request(), controller.signal) : served(controller.signal))) {
        if (ev.error) throw new Error(ev.error.message);
        if (ev.usage) usage = ev.usage;
        const c = ev.choices && ev.choices[0];
        if (!c) continue;
        if (c.delta && c.delta.content) text += c.delta.content;
        if (c.finish_reason) finish = c.finish_reason;
        if (!frame) frame = requestAnimationFrame(() => { frame = 0; show(div, text); el.messages.scrollTop = el.messages.scrollHeight; });
      }
      div.dataset.state = 'done';
    } catch (e) {
      if (e.name === 'AbortError') { div.dataset.state = 'stopped'; finish = 'stopped'; }
      else { div.dataset.state = 'error'; div.classList.add('error'); div.querySelector('.meta').textContent = e.message; }
    } finally {
      cancelAnimationFrame(frame); controller = null;
      show(div, text);
      if (div.dataset.state !== 'error') {                 // a failed reply stays on the page, out of the history: Regenerate retries
        history.push({role: 'assistant', content: text});
        const secs = (performance.now() - t0) / 1000;
        div.querySelector('.meta').textContent = [usage && `${usage.completion_tokens} tokens`, `${secs.toFixed(1)} s`, finish].filter(Boolean).join(' · ');
      }
      el.status.textContent = ''; busy(false);
    }
  }

  // ---- the controls
  el.send.closest('form').addEventListener('submit', e => {
    e.preventDefault();
    const q = el.input.value.trim();
    if (!q || controller) return;
    history.push({role: 'user', content: q}); bubble('user', q); el.input.value = '';
    generate();
  });
  el.input.addEventListener('keydown', e => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); el.send.click(); }
  });
  el.stop.addEventListener('click', () => controller && controller.abort());
  el.regenerate.addEventListener('click', () => {
    if (controller || !history.length) return;
    if (history[history.length - 1].role === 'assistant') history.pop();
    const last = el.messages.lastElementChild;
    if (last && last.classList.contains('assistant')) last.remove();
    generate();
  });
  el.clear.addEventListener('click', () => { if (controller) controller.abort(); history = []; el.messages.replaceChildren(); busy(false); });
  el.maxTokens.addEventListener('input', () => { el.maxTokens.dataset.touched = '1'; });
  el.temperature.addEventListener('input', () => { el.tempValue.textContent = el.temperature.value; });

  // ---- light and dark: the system's choice until the toggle overrides it (remembered in localStorage)
  const dark = () => document.documentElement.dataset.theme ? document.documentElement.dataset.theme === 'dark'
                                                            : matchMedia('(prefers-color-scheme: dark)').matches;
  function theme(t) {
    if (t) document.documentElement.dataset.theme = t;
    el.theme.textContent = dark() ? 'Light' : 'Dark';
  }
  el.theme.addEventListener('click', () => { const t = dark() ? 'light' : 'dark'; localStorage.setItem('convchat-theme', t); theme(t); });
  theme(localStorage.getItem('convchat-theme'));

  busy(false); loadInfo(); probe();
})();
