// index.html on its own: ?model=<url>&data=<.npz url>[&backend=wasm|webgpu][&threads=N][&runs=N]
// runs the data's inputs through the model and writes outputs and timings into the page.
import * as ew from './edgeport-web.mjs';

const params = new URLSearchParams(location.search);
const out = document.getElementById('result');
const status = document.getElementById('status');

function show(result) {
  out.textContent = JSON.stringify(result, null, 1);
  document.body.dataset.state = result.error ? 'error' : 'done';
  status.textContent = result.error ? `error: ${result.error}` : 'done';
}

function summary(tensor) {
  const values = Array.from(tensor.data, Number);
  const finite = values.filter(Number.isFinite);
  return {
    dtype: tensor.type, dims: [...tensor.dims],
    min: Math.min(...finite), max: Math.max(...finite),
    mean: finite.reduce((a, b) => a + b, 0) / Math.max(1, finite.length),
    first: values.slice(0, 8),
  };
}

function percentile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1) + 0.5))];
}

async function main() {
  // the bundle's defaults (web/config.json), when the page is served from a bundle
  const config = await fetch('./config.json').then((r) => (r.ok ? r.json() : {})).catch(() => ({}));
  const model = params.get('model') || config.model || '../model.onnx';
  const data = params.get('data') || config.data || '../reference.npz';
  const backend = params.get('backend') || config.backend || 'wasm';
  const runs = Number(params.get('runs') || 20);
  status.textContent = `loading ${model}`;
  await ew.loadOrt(backend, Number(params.get('threads')) || null);
  const loaded = await ew.loadModel('model', model, backend);
  const arrays = await ew.parseNpz(await (await fetch(data)).arrayBuffer());
  const feeds = {};
  // a bundle's reference.npz holds inputs/<name> and the source model's outputs/<name>
  for (const name of loaded.inputs) {
    const array = arrays[`inputs/${name}`] || arrays[name];
    if (!array) throw new Error(`${data} has no array named ${name} (it has ${Object.keys(arrays).join(', ')})`);
    feeds[name] = ew.toTensor(array);
  }
  const outputs = await ew.run('model', feeds);
  const versus = {};
  loaded.outputs.forEach((n, i) => {
    const expected = arrays[`outputs/${n}`];
    if (!expected) return;
    const got = Array.from(outputs[i].data, Number);
    const want = Array.from(ew.toTensor(expected).data, Number);
    if (got.length !== want.length) return;
    versus[n] = { max_abs_diff_vs_source: Math.max(...got.map((v, j) => Math.abs(v - want[j]))) };
  });
  const times = (await ew.benchmark(['model'], [feeds], runs, 3)).model;
  show({
    model, backend, load_ms: loaded.load_ms, compile_ms: loaded.compile_ms,
    outputs: Object.fromEntries(loaded.outputs.map((n, i) => [n, { ...summary(outputs[i]), ...versus[n] }])),
    latency_ms: { p50: percentile(times, 0.5), p90: percentile(times, 0.9), runs: times.length },
    info: await ew.info(backend === 'webgpu'),
  });
}

main().catch((error) => show({ error: String(error && error.message || error) }));
