// edgeport-web: run an ONNX model in the browser with the onnxruntime-web vendored in ./ort/.
//
// Used two ways: by index.html on its own (?model=...&data=...), and by edgeport's Python driver
// (index.html?control=1), which sends commands over /_edgeport/next and gets replies on
// /_edgeport/reply. Nothing is fetched from anywhere but the page's own origin.

const ORT_DIR = new URL('./ort/', import.meta.url);
// backend -> the onnxruntime-web build that holds it (see edgeport/formats/web/assets.py)
const BUILDS = { wasm: 'ort.wasm.min.mjs', webgpu: 'ort.webgpu.min.mjs' };
// numpy dtype descr (without byte order) <-> ort.Tensor type and typed array
const DTYPES = {
  f4: ['float32', Float32Array], f2: ['float16', Uint16Array], i8: ['int64', BigInt64Array],
  i4: ['int32', Int32Array], u1: ['uint8', Uint8Array], i1: ['int8', Int8Array], b1: ['bool', Uint8Array],
  f8: ['float64', Float64Array], u8: ['uint64', BigUint64Array], u4: ['uint32', Uint32Array],
  i2: ['int16', Int16Array], u2: ['uint16', Uint16Array],
};
const DESCR = Object.fromEntries(Object.entries(DTYPES).map(([k, [t]]) => [t, (k === 'b1' || k[1] === '1' ? '|' : '<') + k]));

let ort = null;
let backendInUse = null;
const sessions = new Map();

/** Import the onnxruntime-web build of `backend` once and configure it; returns the ort namespace.
 * `placements`: log verbosely at the runtime level, so that loadModel(..., placements=true) can read
 * which provider runs which node (each session still logs errors only unless it asks). */
export async function loadOrt(backend = 'wasm', threads = null, placements = false) {
  if (ort) {
    if (backend !== backendInUse) throw new Error(`this page already runs the ${backendInUse} backend, not ${backend}`);
    return ort;
  }
  if (!BUILDS[backend]) throw new Error(`unknown backend ${backend}: wasm or webgpu`);
  hookConsole();
  ort = await import(new URL(BUILDS[backend], ORT_DIR).href);
  backendInUse = backend;
  ort.env.wasm.wasmPaths = ORT_DIR.href;
  if (threads) ort.env.wasm.numThreads = threads;
  ort.env.logLevel = placements ? 'verbose' : 'error';
  return ort;
}

// ---- .npy / .npz reading --------------------------------------------------------------------

/** Parse one .npy file (ArrayBuffer) into {dtype, dims, data} (data: a typed array). */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== 'NUMPY') throw new Error('not a .npy file');
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.slice(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error('Fortran-ordered .npy arrays are not supported');
  const dims = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (descr[0] === '>') throw new Error(`big-endian .npy (${descr}) is not supported`);
  const entry = DTYPES[descr.slice(1)];
  if (!entry) throw new Error(`unsupported .npy dtype ${descr}`);
  const [dtype, Typed] = entry;
  const offset = start + headerLen;
  const count = dims.reduce((a, b) => a * b, 1);
  // copy: the typed array must start at a multiple of its element size
  const data = new Typed(buffer.slice(offset, offset + count * Typed.BYTES_PER_ELEMENT));
  return { dtype, dims, data };
}

async function inflateRaw(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return new Response(stream).arrayBuffer();
}

/** Parse a .npz (a zip of .npy files, stored or deflated) into {name: {dtype, dims, data}}. */
export async function parseNpz(buffer) {
  const view = new DataView(buffer);
  let eocd = -1;
  for (let i = buffer.byteLength - 22; i >= Math.max(0, buffer.byteLength - 65557); i--) {
    if (view.getUint32(i, true) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) throw new Error('not a .npz file (no zip directory)');
  let count = view.getUint16(eocd + 10, true);
  let dirOffset = view.getUint32(eocd + 16, true);
  if (dirOffset === 0xffffffff || count === 0xffff) { // zip64 (np.savez writes it for big arrays)
    const locator = eocd - 20;
    const eocd64 = Number(view.getBigUint64(locator + 8, true));
    count = Number(view.getBigUint64(eocd64 + 32, true));
    dirOffset = Number(view.getBigUint64(eocd64 + 48, true));
  }
  const arrays = {};
  let p = dirOffset;
  for (let n = 0; n < count; n++) {
    if (view.getUint32(p, true) !== 0x02014b50) throw new Error('corrupt .npz directory');
    const method = view.getUint16(p + 10, true);
    let compressed = view.getUint32(p + 20, true);
    const nameLen = view.getUint16(p + 28, true);
    const extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    let local = view.getUint32(p + 42, true);
    const name = new TextDecoder().decode(new Uint8Array(buffer, p + 46, nameLen));
    if (compressed === 0xffffffff || local === 0xffffffff) { // zip64 extra field of the directory
      let e = p + 46 + nameLen;
      const end = e + extraLen;
      while (e < end) {
        const id = view.getUint16(e, true), size = view.getUint16(e + 2, true);
        if (id === 1) {
          let q = e + 4;
          if (view.getUint32(p + 24, true) === 0xffffffff) q += 8;
          if (compressed === 0xffffffff) { compressed = Number(view.getBigUint64(q, true)); q += 8; }
          if (local === 0xffffffff) local = Number(view.getBigUint64(q, true));
        }
        e += 4 + size;
      }
    }
    const dataStart = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    const raw = new Uint8Array(buffer, dataStart, compressed);
    let body;
    if (method === 0) body = raw.slice().buffer;
    else if (method === 8) body = await inflateRaw(raw);
    else throw new Error(`unsupported .npz compression method ${method} in ${name}`);
    arrays[name.replace(/\.npy$/, '')] = parseNpy(body);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return arrays;
}

/** An ort.Tensor from a parsed .npy array. */
export function toTensor(array) {
  return new ort.Tensor(array.dtype, array.data, array.dims);
}

// ---- sessions -------------------------------------------------------------------------------

function sessionOptions(backend, verbose) {
  return { executionProviders: [backend], graphOptimizationLevel: 'all', logSeverityLevel: verbose ? 0 : 3, logVerbosityLevel: 0 };
}

/** Parse onnxruntime's verbose "Node placements" log lines into {execution provider: {count,
 * nodes: ["Op (node name)", ...]}}; `nodes` stays empty when every node runs on one provider
 * (onnxruntime then logs only the number). Counts are after graph optimization. */
export function parsePlacements(lines) {
  const placements = {};
  let current = null;
  for (const line of lines) {
    const head = /(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(line);
    if (head) {
      current = head[1];
      placements[current] = { count: Number(head[2]), nodes: [] };
      continue;
    }
    const node = /VerifyEachNodeIsAssignedToAnEp\]\s{3,}(\S+) \(([^)]*)\)/.exec(line);
    if (node && current) placements[current].nodes.push(`${node[1]} (${node[2]})`);
    else if (!/VerifyEachNodeIsAssignedToAnEp/.test(line)) current = null;
  }
  return placements;
}

// onnxruntime-web keeps the console function it first logs with, so the hook is installed once,
// before it loads, and forwards to the real console unless a session creation is capturing.
let captured = null;
function hookConsole() {
  for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
    const real = console[level].bind(console);
    console[level] = (...args) => (captured ? captured.push(args.map(String).join(' ')) : real(...args));
  }
}

async function createCapturing(bytes, backend) {
  captured = [];
  try {
    const session = await ort.InferenceSession.create(bytes, sessionOptions(backend, true));
    return [session, parsePlacements(captured)];
  } finally {
    captured = null;
  }
}

/** Fetch and compile a model; returns {load_ms, compile_ms, bytes, inputs, outputs, input_types},
 * plus with `placements` which execution provider runs which nodes (read from onnxruntime's log). */
export async function loadModel(name, url, backend = backendInUse || 'wasm', placements = false) {
  const t0 = performance.now();
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot fetch the model ${url}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const t1 = performance.now();
  let session, placed = null;
  if (placements) [session, placed] = await createCapturing(bytes, backend);
  else session = await ort.InferenceSession.create(bytes, sessionOptions(backend, false));
  const t2 = performance.now();
  sessions.set(name, session);
  const result = {
    load_ms: t1 - t0, compile_ms: t2 - t1, bytes: bytes.length,
    inputs: [...session.inputNames], outputs: [...session.outputNames],
    // onnxruntime-web >= 1.22: the element type of each input (e.g. 'float32', 'int64')
    input_types: (session.inputMetadata || []).map((m) => (m.isTensor ? m.type : null)),
  };
  if (placements) result.placements = placed;
  return result;
}

function sessionOf(name) {
  const session = sessions.get(name);
  if (!session) throw new Error(`no model loaded under the name ${name}`);
  return session;
}

/** Release the session `name` (its memory in the page). */
export async function release(name) {
  const session = sessions.get(name);
  sessions.delete(name);
  if (session) await session.release();
}

/** Run the session `name` on {input: ort.Tensor}; returns its outputs in output order as ort.Tensors. */
export async function run(name, feeds) {
  const session = sessionOf(name);
  const results = await session.run(feeds);
  const outputs = session.outputNames.map((o) => results[o]);
  // WebGPU outputs may live on the GPU: bring them to the CPU
  for (let i = 0; i < outputs.length; i++) {
    if (outputs[i].location && outputs[i].location !== 'cpu') {
      const data = await outputs[i].getData(true);
      outputs[i] = new ort.Tensor(outputs[i].type, data, outputs[i].dims);
    }
  }
  return outputs;
}

/** Time sessions interleaved (A B B A ...) after warm-up: each name is warmed up
 * max(warmup, feedList.length) times, then run `runs` rounds; returns {name: [ms per run]}. */
export async function benchmark(names, feedList, runs, warmup) {
  const count = Math.max(1, feedList.length);
  for (const name of names) {
    for (let i = 0; i < Math.max(warmup, feedList.length); i++) await run(name, feedList[i % count]);
  }
  const samples = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < runs; i++) {
    const feeds = feedList[i % count];
    const order = i % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      const start = performance.now();
      await run(name, feeds);
      samples[name].push(performance.now() - start);
    }
  }
  return samples;
}

// ---- environment ------------------------------------------------------------------------------

// (module (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)): valid only with SIMD
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

/** JS heap figures (Chromium's performance.memory), or null elsewhere. */
export function heap() {
  const m = performance.memory;
  return m ? { used_bytes: m.usedJSHeapSize, total_bytes: m.totalJSHeapSize, limit_bytes: m.jsHeapSizeLimit } : null;
}

/** What runs the model: user agent, backend, threads in use, isolation, SIMD, heap; the WebGPU
 * adapter's info (or why there is none) when `withGpu`. */
export async function info(withGpu = false) {
  const result = {
    user_agent: navigator.userAgent,
    backend: backendInUse,
    ort_version: ort ? ort.env.versions?.web ?? null : null,
    threads: ort ? ort.env.wasm.numThreads ?? null : null,
    hardware_concurrency: navigator.hardwareConcurrency,
    cross_origin_isolated: self.crossOriginIsolated === true,
    simd: WebAssembly.validate(SIMD_PROBE),
    heap: heap(),
  };
  if (withGpu) result.webgpu = await gpuInfo();
  return result;
}

async function gpuInfo() {
  if (!navigator.gpu) return { available: false, reason: 'navigator.gpu is undefined (WebGPU not exposed)' };
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { available: false, reason: 'navigator.gpu.requestAdapter() returned null' };
    const a = adapter.info || {};
    return {
      available: true, vendor: a.vendor, architecture: a.architecture, device: a.device,
      description: a.description, is_fallback_adapter: adapter.isFallbackAdapter ?? a.isFallbackAdapter ?? null,
      features: [...adapter.features],
    };
  } catch (error) {
    return { available: false, reason: String(error && error.message || error) };
  }
}

// ---- binary replies ---------------------------------------------------------------------------

/** Pack tensors as [u32 header length][JSON header][raw bytes...]: no number goes through JSON. */
export function packTensors(tensors, extra = {}) {
  const parts = [];
  const entries = [];
  let offset = 0;
  for (const t of tensors) {
    const data = t.data;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    entries.push({ dtype: DESCR[t.type] || t.type, dims: [...t.dims], offset, nbytes: bytes.length });
    parts.push(bytes);
    offset += bytes.length;
  }
  const header = new TextEncoder().encode(JSON.stringify({ ...extra, tensors: entries }));
  const size = new Uint8Array(4);
  new DataView(size.buffer).setUint32(0, header.length, true);
  return new Blob([size, header, ...parts]);
}
