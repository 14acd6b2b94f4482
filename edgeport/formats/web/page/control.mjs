// The Python driver's side of the page (index.html?control=1): long-poll /_edgeport/next for a
// command, run it with edgeport-web.mjs, POST the result to /_edgeport/reply?id=N. Tensors travel
// as .npz (to the page) and packed binary (from it), never as JSON lists. Page errors are POSTed
// to /_edgeport/error so that the driver fails at once with the page's message.
import * as ew from './edgeport-web.mjs';

const base = '/_edgeport/';

function post(path, body, type) {
  return fetch(base + path, { method: 'POST', body, headers: { 'Content-Type': type } });
}

function reportError(kind, error) {
  const message = String((error && (error.message || error.reason)) || error);
  post('error', JSON.stringify({ kind, message, stack: error && error.stack ? String(error.stack) : '' }), 'application/json');
}

window.addEventListener('error', (event) => reportError('error', event.error || event.message));
window.addEventListener('unhandledrejection', (event) => reportError('unhandledrejection', event.reason));

async function feedsFrom(url) {
  const arrays = await ew.parseNpz(await (await fetch(url)).arrayBuffer());
  // keys "<sample>/<input name>": one dict of ort.Tensors per sample
  const list = [];
  for (const [key, array] of Object.entries(arrays)) {
    const cut = key.indexOf('/');
    const index = Number(key.slice(0, cut));
    (list[index] ||= {})[key.slice(cut + 1)] = ew.toTensor(array);
  }
  return list.length ? list : [{}]; // a model without inputs still runs once per round
}

const COMMANDS = {
  async setup(c) { await ew.loadOrt(c.backend, c.threads, true); return ew.info(false); },
  info(c) { return ew.info(c.gpu); },
  load(c) { return ew.loadModel(c.name, c.url, c.backend, c.placements); },
  async run(c) { return ew.packTensors(await ew.run(c.name, (await feedsFrom(c.feeds))[0])); },
  async benchmark(c) { return ew.benchmark(c.names, await feedsFrom(c.feeds), c.runs, c.warmup); },
  heap() { return ew.heap(); },
  async release(c) { await ew.release(c.name); return { released: c.name }; },
  // a deliberate page error, for the driver's tests: thrown outside any command
  throw(c) { setTimeout(() => { throw new Error(c.message); }, 0); return { thrown: true }; },
};

async function execute(command) {
  const handler = COMMANDS[command.op];
  if (!handler) throw new Error(`unknown command ${command.op}`);
  return handler(command);
}

async function loop() {
  await post('ready', JSON.stringify({ user_agent: navigator.userAgent }), 'application/json');
  for (;;) {
    const response = await fetch(base + 'next', { cache: 'no-store' });
    if (response.status === 204) continue; // poll timed out on the server: ask again
    if (response.status === 410) return; // the driver is closing
    const command = await response.json();
    let body, type;
    try {
      const result = await execute(command);
      if (result instanceof Blob) { body = result; type = 'application/octet-stream'; }
      else { body = JSON.stringify({ ok: true, result }); type = 'application/json'; }
    } catch (error) {
      body = JSON.stringify({ ok: false, error: String(error && error.message || error), stack: String(error && error.stack || '') });
      type = 'application/json';
    }
    await post(`reply?id=${command.id}`, body, type);
  }
}

loop().catch((error) => reportError('control', error));
