/**
 * The demo's web page, kept in a .ts module so that the compiled demo (dist/examples) serves
 * it too. It speaks two small protocols over the browser's own WebSocket:
 *
 *   /chat    page -> server: a text message per chat line
 *            (/chat?room=NAME: the room, a topic on the server; the page takes it from #NAME)
 *            server -> page: JSON {type:'welcome', name, room} | {type:'chat', from, text}
 *                                 | {type:'presence', text, online}
 *   /upload  page -> server: JSON {name, size} (text), then the file as ONE binary message
 *            server -> page: JSON {type:'progress', received} (about every 1%)
 *                                 | {type:'done', name, size, sha256}
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wspipe demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f3f4f7; color: #1d2330; }
  header { padding: 18px 28px; background: #1d2330; color: #fff; }
  header h1 { margin: 0; font-size: 20px; }
  header p { margin: 4px 0 0; color: #b7bfd0; font-size: 13px; }
  main { display: flex; flex-wrap: wrap; gap: 20px; padding: 20px 28px; }
  section { flex: 1 1 360px; background: #fff; border-radius: 8px; padding: 16px 20px; box-shadow: 0 1px 3px #0002; }
  h2 { margin: 0 0 10px; font-size: 16px; }
  .muted { color: #6a7285; font-size: 13px; }
  #chat-log { height: 220px; overflow-y: auto; border: 1px solid #dde1ea; border-radius: 6px; padding: 8px; margin: 8px 0; background: #fafbfd; }
  #chat-log div { margin: 2px 0; word-wrap: break-word; }
  #chat-log .from { font-weight: 600; color: #3153c7; }
  #chat-log .mine .from { color: #168a4a; }
  #chat-log .note { color: #6a7285; font-style: italic; font-size: 13px; }
  form { display: flex; gap: 8px; }
  input[type=text] { flex: 1; padding: 7px 9px; border: 1px solid #c5cbd8; border-radius: 6px; font: inherit; }
  button { padding: 7px 16px; border: 0; border-radius: 6px; background: #3153c7; color: #fff; font: inherit; cursor: pointer; }
  .bar { height: 18px; background: #e4e7ee; border-radius: 9px; overflow: hidden; margin: 12px 0 6px; }
  #progress { height: 100%; width: 0; background: linear-gradient(90deg, #3153c7, #4f8af0); transition: width .1s; }
  #result { font-family: ui-monospace, monospace; font-size: 12.5px; word-break: break-all; margin-top: 8px; }
  .ok { color: #168a4a; font-weight: 600; }
  .bad { color: #c2372b; font-weight: 600; }
</style>
</head>
<body>
<header>
  <h1>wspipe demo</h1>
  <p>Two WebSocket endpoints on one HTTP server; the terminal running the demo prints every frame.</p>
</header>
<main>
  <section>
    <h2>Chat with every open tab</h2>
    <div class="muted" id="me">connecting...</div>
    <div id="chat-log"></div>
    <form id="chat-form">
      <input id="chat-input" type="text" placeholder="say something" autocomplete="off">
      <button id="chat-send" type="submit">Send</button>
    </form>
  </section>
  <section>
    <h2>Upload a file over a WebSocket</h2>
    <div class="muted">The file goes as one binary message; the server hashes it as it streams in and acknowledges its progress.</div>
    <p><input id="file" type="file"></p>
    <div class="bar"><div id="progress"></div></div>
    <div id="percent" class="muted">no file yet</div>
    <div id="result"></div>
  </section>
</main>
<script>
'use strict';
var base = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;
function $(id) { return document.getElementById(id); }
function mib(n) { return (n / 1048576).toFixed(n < 1048576 ? 3 : 1) + ' MiB'; }

// ----- chat -----
var myName = '';
// The room is the page's #fragment (a topic on the server), 'lobby' without one.
var room = location.hash.length > 1 ? decodeURIComponent(location.hash.slice(1)) : '';
var chat = new WebSocket(base + '/chat' + (room === '' ? '' : '?room=' + encodeURIComponent(room)));
function addLine(from, text, mine) {
  var line = document.createElement('div');
  if (from === null) {
    line.className = 'note';
    line.textContent = text;
  } else {
    if (mine) line.className = 'mine';
    var who = document.createElement('span');
    who.className = 'from';
    who.textContent = from + ': ';
    line.appendChild(who);
    line.appendChild(document.createTextNode(text));
  }
  $('chat-log').appendChild(line);
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
}
chat.onmessage = function (event) {
  var m = JSON.parse(event.data);
  if (m.type === 'welcome') { myName = m.name; $('me').textContent = 'you are ' + m.name + ' in room ' + m.room; }
  else if (m.type === 'chat') addLine(m.from, m.text, m.from === myName);
  else if (m.type === 'presence') addLine(null, m.text + ' (' + m.online + ' online)');
};
chat.onclose = function (event) { $('me').textContent = 'disconnected (' + event.code + ')'; };
$('chat-form').onsubmit = function (event) {
  event.preventDefault();
  var text = $('chat-input').value;
  if (text !== '' && chat.readyState === WebSocket.OPEN) chat.send(text);
  $('chat-input').value = '';
};

// ----- upload -----
function hex(buffer) {
  return Array.from(new Uint8Array(buffer), function (b) { return b.toString(16).padStart(2, '0'); }).join('');
}
function setProgress(done, total) {
  var fraction = total === 0 ? 1 : Math.min(1, done / total);
  $('progress').style.width = (fraction * 100).toFixed(1) + '%';
  $('percent').textContent = Math.floor(fraction * 100) + '% (' + mib(done) + ' of ' + mib(total) + ')';
}
$('file').onchange = function () {
  var file = $('file').files[0];
  if (!file) return;
  $('result').textContent = '';
  setProgress(0, file.size);
  // The browser's own hash, to compare with the server's (crypto.subtle needs a secure context: 127.0.0.1 is one).
  var local = window.crypto && crypto.subtle
    ? file.arrayBuffer().then(function (data) { return crypto.subtle.digest('SHA-256', data); }).then(hex)
    : Promise.resolve(null);
  var upload = new WebSocket(base + '/upload');
  upload.onopen = function () {
    upload.send(JSON.stringify({ name: file.name, size: file.size }));
    upload.send(file);
  };
  upload.onmessage = function (event) {
    var m = JSON.parse(event.data);
    if (m.type === 'progress') setProgress(m.received, file.size);
    if (m.type !== 'done') return;
    setProgress(m.size, file.size);
    upload.close(1000);
    local.then(function (mine) {
      var verdict = mine === null ? '' : mine === m.sha256 ? '<span class="ok">matches the browser\\'s sha256</span>' : '<span class="bad">differs from the browser\\'s sha256 ' + mine + '</span>';
      $('result').innerHTML = 'server received <b>' + m.size + '</b> bytes<br>sha256 <span id="sha256">' + m.sha256 + '</span><br>' + verdict;
    });
  };
  upload.onclose = function (event) {
    if (event.code !== 1000 && event.code !== 1005) $('result').textContent = 'upload failed: ' + event.code + ' ' + event.reason;
  };
};
</script>
</body>
</html>
`;
