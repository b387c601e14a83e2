/**
 * The inspector's page (served by lib/capture/inspector.ts): one HTML document with its style
 * and script inline, no framework. The script opens ws://HOST/feed, keeps the last N messages of
 * each connection (N: `?keep=` in the page's URL, default 500), and renders connections and
 * messages as they come: text (JSON pretty-printed), binary as hex. The filter matches message
 * contents (a substring, or /a regular expression/); Pause freezes the view while the events are
 * still kept (bounded as above); Export HAR saves what the page holds as HAR 1.2 with Chrome's
 * `_webSocketMessages`. The script writes text with textContent only (never innerHTML), since
 * the traffic shown is untrusted.
 */
export const INSPECTOR_PAGE = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wspipe inspector</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --bg: #f7f8fa; --panel: #fff; --line: #e3e6eb; --text: #1d2330; --muted: #6b7385;
          --send: #0b7a3e; --recv: #1a56c4; --accent: #3d5afe; --warn: #b35c00; --sel: #eef2ff; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--text); background: var(--bg); }
  header { display: flex; align-items: center; gap: 12px; padding: 10px 16px; background: var(--panel); border-bottom: 1px solid var(--line); }
  header h1 { font-size: 15px; margin: 0; font-weight: 600; }
  header h1 span { color: var(--muted); font-weight: 400; }
  #status { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #fde8e8; color: #9b1c1c; }
  #status.live { background: #e3f6ea; color: var(--send); }
  #filter { flex: 1; max-width: 420px; padding: 6px 10px; border: 1px solid var(--line); border-radius: 6px; font: inherit; }
  button { font: inherit; padding: 6px 12px; border: 1px solid var(--line); border-radius: 6px; background: var(--panel); cursor: pointer; }
  button:hover { border-color: var(--accent); }
  button.on { background: var(--accent); color: #fff; border-color: var(--accent); }
  #counts { color: var(--muted); font-size: 12px; margin-left: auto; }
  main { display: grid; grid-template-columns: minmax(320px, 38%) 1fr; height: calc(100vh - 51px); }
  section { overflow: auto; background: var(--panel); }
  section + section { border-left: 1px solid var(--line); }
  h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0; padding: 10px 14px; border-bottom: 1px solid var(--line); position: sticky; top: 0; background: var(--panel); z-index: 1; }
  table { width: 100%; border-collapse: collapse; }
  td { padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
  #conns tr { cursor: pointer; }
  #conns tr:hover { background: #fafbff; }
  #conns tr.sel { background: var(--sel); }
  .id { color: var(--muted); width: 2.5em; }
  .path { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
  .meta { color: var(--muted); font-size: 12px; }
  .badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; border: 1px solid var(--line); background: #fff; color: var(--muted); margin-right: 4px; }
  .badge.open { background: #e3f6ea; border-color: #bfe6cd; color: var(--send); }
  .badge.closed { background: #f1f1f1; color: #555; }
  .badge.err { background: #fde8e8; border-color: #f5c2c2; color: #9b1c1c; }
  .msg td { font-size: 12px; }
  .dir { width: 1.6em; font-weight: 700; text-align: center; }
  .send .dir { color: var(--send); }
  .receive .dir { color: var(--recv); }
  .time { color: var(--muted); white-space: nowrap; font-family: ui-monospace, monospace; }
  .size { color: var(--muted); white-space: nowrap; text-align: right; }
  pre { margin: 0; white-space: pre-wrap; word-break: break-all; font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; max-height: 18em; overflow: auto; }
  .hex { color: #5b4a8b; }
  .note { color: var(--warn); font-size: 11px; }
  .empty { color: var(--muted); padding: 24px; text-align: center; }
</style>
</head>
<body>
<header>
  <h1>wspipe <span>inspector</span></h1>
  <span id="status">connecting</span>
  <input id="filter" type="search" placeholder="Filter messages: text, or /regular expression/" autocomplete="off">
  <button id="pause" type="button">Pause</button>
  <button id="export" type="button">Export HAR</button>
  <span id="counts"></span>
</header>
<main>
  <section>
    <h2>Connections</h2>
    <table id="conns"><tbody></tbody></table>
    <div class="empty" id="noconns">No connection yet. Connect a client to the proxy.</div>
  </section>
  <section>
    <h2 id="msgtitle">Messages (all connections)</h2>
    <table id="msgs"><tbody></tbody></table>
    <div class="empty" id="nomsgs">No message to show.</div>
  </section>
</main>
<script>
(function () {
  'use strict';
  var KEEP = Math.max(1, Number(new URLSearchParams(location.search).get('keep')) || 500);
  var KEEP_CONNS = 200;
  var conns = new Map();      // id -> { open, close, messages: [] }
  var selected = null;        // connection id, or null for all
  var paused = false;
  var pending = 0;            // events received while paused
  var dropped = 0;
  var filter = null;          // function (message) -> boolean
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function clock(ms) {
    var d = new Date(ms);
    var p = function (n, w) { return String(n).padStart(w || 2, '0'); };
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()) + '.' + p(d.getMilliseconds(), 3);
  }
  function bytes(n) { return n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KiB' : (n / 1048576).toFixed(1) + ' MiB'; }
  function fromBase64(b64) {
    var s = atob(b64), out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function hexDump(data) {
    var lines = [];
    for (var i = 0; i < data.length; i += 16) {
      var row = data.subarray(i, i + 16), hex = [], ascii = '';
      for (var j = 0; j < row.length; j++) {
        hex.push(row[j].toString(16).padStart(2, '0'));
        ascii += row[j] >= 32 && row[j] < 127 ? String.fromCharCode(row[j]) : '.';
      }
      lines.push(i.toString(16).padStart(6, '0') + '  ' + hex.join(' ').padEnd(47, ' ') + '  ' + ascii);
    }
    return lines.join('\n');
  }
  /** What a message shows: JSON pretty-printed, text as is, binary as hex. */
  function shown(m) {
    if (m.shown !== undefined) return m.shown;
    if (m.text !== undefined) {
      var t = m.text.trim();
      if ((t[0] === '{' || t[0] === '[') && !m.truncated) {
        try { m.shown = JSON.stringify(JSON.parse(t), null, 2); m.json = true; return m.shown; } catch (e) { /* not JSON */ }
      }
      m.shown = m.text;
    } else {
      m.shown = hexDump(fromBase64(m.base64 || ''));
      m.hex = true;
    }
    return m.shown;
  }
  function matches(m) { return filter === null || filter(m); }
  function setFilter(text) {
    text = text.trim();
    if (text === '') { filter = null; return; }
    var re = /^\/(.+)\/([a-z]*)$/.exec(text);
    if (re !== null) {
      try { var r = new RegExp(re[1], re[2]); filter = function (m) { return r.test(shown(m)); }; return; } catch (e) { /* as text */ }
    }
    var needle = text.toLowerCase();
    filter = function (m) { return shown(m).toLowerCase().indexOf(needle) !== -1; };
  }

  function closeBadge(c) {
    if (c.close === null) return el('span', 'badge open', 'open');
    var code = c.close.client.code, up = c.close.upstream.code;
    var clean = function (x) { return x === 1000 || x === 1001 || x === 1005; };
    return el('span', 'badge ' + (clean(code) && clean(up) ? 'closed' : 'err'), 'closed ' + code + (up !== code ? ' / ' + up : ''));
  }
  function connRow(c) {
    var tr = el('tr');
    tr.dataset.conn = String(c.open.conn);
    if (selected === c.open.conn) tr.className = 'sel';
    tr.appendChild(el('td', 'id', '#' + c.open.conn));
    var main = el('td');
    main.appendChild(el('div', 'path', c.open.path));
    var meta = el('div', 'meta');
    meta.appendChild(closeBadge(c));
    if (c.open.protocol) meta.appendChild(el('span', 'badge', c.open.protocol));
    if (c.open.extensions) meta.appendChild(el('span', 'badge', c.open.extensions.split(';')[0]));
    meta.appendChild(document.createTextNode(c.open.client + ' \u00b7 ' + clock(c.open.time) + ' \u00b7 ' + c.count + ' msg'));
    main.appendChild(meta);
    tr.appendChild(main);
    tr.addEventListener('click', function () { selected = selected === c.open.conn ? null : c.open.conn; renderAll(); });
    return tr;
  }
  function msgRow(m) {
    var tr = el('tr', 'msg ' + (m.dir === 'upstream' ? 'send' : 'receive'));
    tr.appendChild(el('td', 'dir', m.dir === 'upstream' ? '\u2191' : '\u2193'));
    var t = el('td', 'time', clock(m.time));
    t.appendChild(el('div', 'meta', '#' + m.conn + (m.opcode === 2 ? ' bin' : '')));
    tr.appendChild(t);
    var body = el('td');
    var pre = el('pre', m.hex ? 'hex' : '', shown(m));
    if (m.hex) pre.className = 'hex';
    body.appendChild(pre);
    var notes = [];
    if (m.compressed) notes.push('compressed: ' + bytes(m.wireSize) + ' on the wire');
    if (m.truncated) notes.push('truncated: ' + bytes(m.hex ? fromBase64(m.base64).length : m.text.length) + ' of ' + bytes(m.size) + ' shown');
    if (notes.length > 0) body.appendChild(el('div', 'note', notes.join(' \u00b7 ')));
    tr.appendChild(body);
    tr.appendChild(el('td', 'size', bytes(m.size)));
    return tr;
  }
  function visible() {
    var list = [];
    conns.forEach(function (c) {
      if (selected !== null && c.open.conn !== selected) return;
      for (var i = 0; i < c.messages.length; i++) if (matches(c.messages[i])) list.push(c.messages[i]);
    });
    return list.sort(function (a, b) { return a.time - b.time; });
  }
  function renderConns() {
    var body = $('conns').tBodies[0];
    body.textContent = '';
    conns.forEach(function (c) { body.appendChild(connRow(c)); });
    $('noconns').style.display = conns.size === 0 ? '' : 'none';
  }
  function renderMsgs() {
    var body = $('msgs').tBodies[0];
    body.textContent = '';
    var list = visible();
    var start = Math.max(0, list.length - KEEP);
    for (var i = start; i < list.length; i++) body.appendChild(msgRow(list[i]));
    $('nomsgs').style.display = list.length === 0 ? '' : 'none';
    $('msgtitle').textContent = selected === null ? 'Messages (all connections)' : 'Messages of #' + selected;
  }
  function renderCounts() {
    var n = 0;
    conns.forEach(function (c) { n += c.messages.length; });
    $('counts').textContent = conns.size + ' connection' + (conns.size === 1 ? '' : 's') + ', ' + n + ' message' + (n === 1 ? '' : 's') +
      (dropped > 0 ? ', ' + dropped + ' missed' : '') + (paused && pending > 0 ? ', ' + pending + ' new while paused' : '');
  }
  function renderAll() { renderConns(); renderMsgs(); renderCounts(); }

  function onEvent(e) {
    if (e.type === 'open') {
      conns.set(e.conn, { open: e, close: null, messages: [], count: 0 });
      // Connections are bounded too: the oldest closed ones go first.
      if (conns.size > KEEP_CONNS) {
        for (var entry of conns) { if (entry[1].close !== null) { conns.delete(entry[0]); break; } }
      }
    }
    else if (e.type === 'close') { var c = conns.get(e.conn); if (c) c.close = e; }
    else if (e.type === 'dropped') dropped += e.count;
    else if (e.type === 'message') {
      var k = conns.get(e.conn);
      if (!k) return;
      k.messages.push(e);
      k.count++;
      if (k.messages.length > KEEP) k.messages.shift();
      if (!paused && (selected === null || selected === e.conn) && matches(e)) {
        var body = $('msgs').tBodies[0];
        // Follow the newest messages while the view is at its bottom.
        var pane = $('msgs').parentNode;
        var follow = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 8;
        body.appendChild(msgRow(e));
        if (follow) pane.scrollTop = pane.scrollHeight;
        while (body.rows.length > KEEP) body.deleteRow(0);
        $('nomsgs').style.display = 'none';
        renderConns();
        renderCounts();
        return;
      }
    }
    if (paused) { pending++; renderCounts(); return; }
    if (e.type === 'message') { renderCounts(); return; }
    renderConns();
    renderCounts();
  }

  function feed() {
    var ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/feed');
    ws.onopen = function () { $('status').textContent = 'live'; $('status').className = 'live'; };
    ws.onmessage = function (m) { onEvent(JSON.parse(m.data)); };
    ws.onclose = function () {
      $('status').textContent = 'disconnected'; $('status').className = '';
      setTimeout(function () { conns.clear(); feed(); }, 2000);
    };
  }

  function har() {
    var entries = [];
    conns.forEach(function (c) {
      var o = c.open, end = c.close ? c.close.time : Date.now();
      var url = new URL(o.url);
      entries.push({
        startedDateTime: new Date(o.time).toISOString(), time: end - o.time,
        request: { method: 'GET', url: o.url, httpVersion: 'HTTP/1.1', cookies: [], headers: o.requestHeaders || [],
          queryString: Array.from(url.searchParams, function (p) { return { name: p[0], value: p[1] }; }), headersSize: -1, bodySize: 0 },
        response: { status: 101, statusText: 'Switching Protocols', httpVersion: 'HTTP/1.1', cookies: [], headers: o.responseHeaders || [],
          content: { size: 0, mimeType: 'x-unknown' }, redirectURL: '', headersSize: -1, bodySize: 0 },
        cache: {}, timings: { send: 0, wait: 0, receive: end - o.time }, connection: String(o.conn),
        _resourceType: 'websocket',
        _webSocketMessages: c.messages.map(function (m) {
          var out = { type: m.dir === 'upstream' ? 'send' : 'receive', time: m.time / 1000, opcode: m.opcode,
            data: m.text !== undefined ? m.text : m.base64 };
          if (m.truncated) { out._size = m.size; out._truncated = true; }
          return out;
        }),
      });
    });
    return { log: { version: '1.2', creator: { name: 'wspipe inspector', version: '1' }, entries: entries } };
  }
  window.wspipeInspectorHar = har;

  $('filter').addEventListener('input', function (e) { setFilter(e.target.value); renderMsgs(); });
  $('pause').addEventListener('click', function () {
    paused = !paused;
    $('pause').textContent = paused ? 'Resume' : 'Pause';
    $('pause').className = paused ? 'on' : '';
    if (!paused) { pending = 0; renderAll(); } else renderCounts();
  });
  $('export').addEventListener('click', function () {
    var blob = new Blob([JSON.stringify(har(), null, 2)], { type: 'application/json' });
    var a = el('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'wspipe-' + new Date().toISOString().replace(/[:.]/g, '-') + '.har';
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  });
  renderAll();
  feed();
})();
</script>
</body>
</html>
`;
