"""The browser runtime (issue 17): ONNX models run by onnxruntime-web in headless Chromium.

``assets`` (the pinned onnxruntime-web, from npm at build time), ``page/`` (the page and its ES
module), ``server`` + ``channel`` (a COOP/COEP static server and the page's command channel),
``chromium`` (find, launch, kill), ``session`` (``BrowserSession``), ``runner``
(``BrowserRunner``), ``web_folder`` (a bundle's ``web/``), ``tensors`` (arrays as bytes).

Measured here (Chromium 156 headless, onnxruntime-web 1.31.1, 2 shared cores, 2026-12-07):

- wasm: SIMD yes; 2 threads when the page is cross-origin isolated (1 without the headers).
- WebGPU: ``--enable-unsafe-webgpu`` gives Dawn's SwiftShader adapter (google/swiftshader,
  fallback adapter); onnxruntime-web's WebGPU provider runs a conv+matmul net on it with outputs
  within 4e-6 of Python's ORT, about 100x slower than wasm. In a QDQ int8 model every
  QuantizeLinear falls back to the CPU (with copies), the rest runs in float on the GPU.
- int8 in wasm: 3x (QDQ) to 3.5x (dynamic) faster than fp32 on 4 MatMuls 512x512 (batch 32),
  but no faster on a small conv net (QDQ and QOperator alike), where native ORT is 1.7x faster.
"""
