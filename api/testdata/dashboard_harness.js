// A minimal DOM shim to run the dashboard's script against a live API in
// Node, without a browser: enough for el(), textContent and listeners.
// Usage: node dashboard_harness.js BASE_URL TOKEN < dashboard-script.js
// Prints one "key: value" line per observation for dashboard_test.go.
const base = process.argv[2], token = process.argv[3], script = require('fs').readFileSync(0, 'utf8');
class El {
  constructor(tag) { this.tag = tag; this.children = []; this.attrs = {}; this.style = {}; this._text = ''; this.listeners = {}; this.className = ''; this.disabled = false; this.value = ''; }
  appendChild(c) { this.children.push(c); return c; }
  setAttribute(k, v) { this.attrs[k] = v; }
  addEventListener(ev, fn) { this.listeners[ev] = fn; }
  focus() {}
  set textContent(t) { this._text = t; this.children = []; }
  get textContent() { return this._text + this.children.map(c => c.textContent).join(' '); }
}
const ids = {};
for (const id of ['status', 'login', 'token', 'msg', 'virtuals', 'pools', 'ha', 'hasection', 'isessions', 'issection', 'tunnels', 'tunsection']) ids[id] = new El('div');
global.document = {
  getElementById: id => ids[id],
  createElement: t => new El(t),
  createTextNode: t => ({ textContent: t }),
};
const store = {};
global.sessionStorage = { getItem: k => store[k] || null, setItem: (k, v) => { store[k] = v; } };
global.confirm = () => true;
const calls = [];
const realFetch = fetch;
global.fetch = (path, opts) => { calls.push(opts.method + ' ' + path + ' auth=' + (opts.headers.Authorization || '')); return realFetch(base + path, opts); };
global.setInterval = () => 0;
eval(script);
// waitFor polls cond instead of sleeping a fixed time, so a loaded machine
// only makes the run slower, never wrong.
async function waitFor(what, cond) {
  const deadline = Date.now() + 30000;
  while (!cond()) {
    if (Date.now() > deadline) { console.log('timeout: ' + what); console.log('calls: ' + calls.join(' | ')); console.log('msg: ' + ids.msg.textContent); process.exit(1); }
    await new Promise(r => setTimeout(r, 20));
  }
}
function find(el, pred, out = []) { if (pred(el)) out.push(el); (el.children || []).forEach(c => find(c, pred, out)); return out; }
const dots = () => find(ids.pools, e => e.tag === 'i').map(e => e.className).join(',');
(async () => {
  await waitFor('token prompt', () => ids.login.style.display === 'block');
  console.log('login shown:', ids.login.style.display);
  ids.token.value = token;
  ids.login.listeners.submit({ preventDefault() {} });
  await waitFor('first render', () => ids.status.textContent.startsWith('updated'));
  console.log('status:', ids.status.textContent);
  console.log('virtuals:', ids.virtuals.textContent.replace(/\s+/g, ' '));
  console.log('pools:', ids.pools.textContent.replace(/\s+/g, ' '));
  console.log('ha shown:', ids.hasection.style.display || '(unset)');
  console.log('ha:', ids.ha.textContent.replace(/\s+/g, ' '));
  console.log('isessions shown:', ids.issection.style.display || '(unset)');
  console.log('isessions:', ids.isessions.textContent.replace(/\s+/g, ' '));
  console.log('tunnels shown:', ids.tunsection.style.display || '(unset)');
  console.log('tunnels:', ids.tunnels.textContent.replace(/\s+/g, ' '));
  const fo = find(ids.ha, e => e.tag === 'button').find(b => b._text === 'Failover' && !b.disabled);
  if (fo) { fo.listeners.click(); await waitFor('failover call', () => calls.some(c => c.startsWith('POST /api/v1/traffic-groups/'))); }
  const before = dots();
  const dis = find(ids.pools, e => e.tag === 'button').find(b => b._text === 'Disable' && !b.disabled);
  dis.listeners.click();
  await waitFor('re-render after the state change', () => dots() !== before || ids.msg.textContent !== '');
  console.log('msg:', ids.msg.textContent || '(none)');
  console.log('dots:', dots());
  console.log('calls:', calls.join(' | '));
})();
