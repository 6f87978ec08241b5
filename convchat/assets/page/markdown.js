// A small, safe Markdown renderer for untrusted model output: the text is HTML-escaped first, and only then are
// the few constructs we support (code fences, inline code, bold, italic, headings, lists, http(s) links) turned into tags.
(function (root) {
  'use strict';
  const ESC = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'};
  const escapeHtml = s => String(s).replace(/[&<>"']/g, c => ESC[c]);

  // One line of already escaped text: inline code is set aside first so that nothing inside it is formatted.
  function inline(s) {
    const codes = [];
    s = s.replace(/`([^`]+)`/g, (_, c) => { codes.push(c); return '\u0000' + (codes.length - 1) + '\u0000'; });
    s = s.replace(/\[([^\]]+)\]\((https?:\/\/[^\s()]+)\)/g,
                  (_, text, url) => `<a href="${url}" target="_blank" rel="noopener noreferrer nofollow">${text}</a>`);
    s = s.replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>');
    s = s.replace(/(^|[^*\w])\*([^*\s][^*]*)\*(?!\w)/g, '$1<em>$2</em>');
    return s.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${codes[+i]}</code>`);
  }

  const BULLET = /^\s*[-*+]\s+(.*)$/, NUMBER = /^\s*\d{1,9}[.)]\s+(.*)$/, FENCE = /^\s*```\s*([\w+#.-]*)\s*$/;

  // HTML for `text`, safe to assign to innerHTML whatever `text` holds.
  function render(text) {
    const lines = escapeHtml(String(text).replace(/\u0000/g, '')).split(/\r?\n/), out = [];
    let i = 0;
    while (i < lines.length) {
      const line = lines[i], fence = line.match(FENCE);
      if (fence) {                                       // a code block; an unclosed one (still streaming) runs to the end
        const body = [];
        for (i++; i < lines.length && !FENCE.test(lines[i]); i++) body.push(lines[i]);
        i++;
        const lang = fence[1] ? ` class="language-${fence[1]}"` : '';
        out.push(`<pre><code${lang}>${body.join('\n')}</code></pre>`);
      } else if (BULLET.test(line) || NUMBER.test(line)) {
        const re = BULLET.test(line) ? BULLET : NUMBER, tag = re === BULLET ? 'ul' : 'ol', items = [];
        for (; i < lines.length && re.test(lines[i]); i++) items.push(`<li>${inline(lines[i].match(re)[1])}</li>`);
        out.push(`<${tag}>${items.join('')}</${tag}>`);
      } else if (/^#{1,6}\s/.test(line)) {
        const n = Math.min(line.match(/^#+/)[0].length + 2, 6);
        out.push(`<h${n}>${inline(line.replace(/^#+\s+/, ''))}</h${n}>`); i++;
      } else if (!line.trim()) i++;
      else {                                             // a paragraph: the lines up to a blank line or another block
        const para = [];
        for (; i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !BULLET.test(lines[i])
               && !NUMBER.test(lines[i]) && !/^#{1,6}\s/.test(lines[i]); i++) para.push(inline(lines[i]));
        out.push(`<p>${para.join('<br>')}</p>`);
      }
    }
    return out.join('\n');
  }

  const api = {render, escapeHtml};
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.convchatMarkdown = api;
})(this);
