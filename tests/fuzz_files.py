"""The file fuzzers shared by the tests (a bounded run) and ``bench/fuzz_files.py`` (a long one).

One fuzzer per loader of a data or config file edgeport reads: hypothesis draws a file (a
mutation of a valid file, or a valid file of another kind under this loader's suffix), writes
it, and runs the loader on it. An outcome is ``ok``, ``exit <code>`` (an EdgeportError) or
``internal: <Type>: <message>`` (anything else: the path the CLI reports as an internal error,
exit 1). Only the first two are allowed.

``EDGEPORT_FUZZ_EXAMPLES`` sets the examples per fuzzer (the tests' own bounds otherwise).
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import tempfile
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeport.core.errors import EdgeportError, describe_exception
from edgeport.core.model import TensorSpec

REPO = Path(__file__).resolve().parent.parent
SEED_ONNX = REPO / "tests" / "data" / "bad" / "valid.onnx"
SEED_PROFILE = REPO / "edgeport" / "profiles" / "generic-cpu.yaml"
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def examples(default: int) -> int:
    """The examples per fuzzer: ``EDGEPORT_FUZZ_EXAMPLES`` when set, else ``default``."""
    value = os.environ.get("EDGEPORT_FUZZ_EXAMPLES")
    return int(value) if value else default


# ---------------------------------------------------------------------------------------------
# Outcomes


def outcome(load: Callable[[], Any]) -> str:
    """Run ``load()``; return ``ok``, ``exit <code>`` or ``internal: <Type>: <first line>``."""
    try:
        load()
    except EdgeportError as exc:
        if exc.exit_code not in (2, 3, 4) or not exc.message.strip():
            return f"internal: {type(exc).__name__} with exit {exc.exit_code}: {exc.message!r}"
        return f"exit {exc.exit_code}"
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001  (the finding this harness exists for)
        if os.environ.get("EDGEPORT_FUZZ_TRACEBACK"):
            traceback.print_exc()
        return f"internal: {describe_exception(exc)}"
    return "ok"


# ---------------------------------------------------------------------------------------------
# Bytes: one edit is (kind, position as a fraction of the length, byte value).

EDIT = st.tuples(
    st.sampled_from(["set", "insert", "delete", "flip"]), st.floats(0, 1, allow_nan=False), st.integers(0, 255)
)
EDITS = st.lists(EDIT, min_size=0, max_size=6)
TRUNCATE = st.none() | st.floats(0, 1, allow_nan=False)


def mutate(data: bytes, edits: list[tuple[str, float, int]], truncate: float | None) -> bytes:
    """Apply ``edits`` to ``data`` and optionally cut it at the fraction ``truncate``."""
    buffer = bytearray(data)
    for kind, where, value in edits:
        position = min(int(where * len(buffer)), max(len(buffer) - 1, 0))
        if kind == "insert":
            buffer.insert(position, value)
        elif not buffer:
            continue
        elif kind == "set":
            buffer[position] = value
        elif kind == "delete":
            del buffer[position]
        else:
            buffer[position] ^= 1 << (value % 8)
    if truncate is not None:
        buffer = buffer[: int(truncate * len(buffer))]
    return bytes(buffer)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _image_bytes(mode: str, size: tuple[int, int], fmt: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, size).save(out, format=fmt)
    return out.getvalue()


def seeds() -> dict[str, bytes]:
    """Valid files of every kind, by name: each fuzzer mutates its own and those of the others."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    return {
        "npz": _npz_bytes(x=x, y=np.arange(4)),
        "npz_ragged": _npz_bytes(**{"x/0": x[0], "x/1": x[1], "x/2": x[2, :, :4]}),
        "npy": _npy_bytes(x),
        "png": _image_bytes("RGB", (8, 8), "PNG"),
        "jpeg": _image_bytes("L", (8, 8), "JPEG"),
        "txt": b"a first sentence\nthe second one\n\nthird\n",
        "json": b'{"version": 1, "scheme": "int8", "layers": {}, "details": {}}',
        "yaml": SEED_PROFILE.read_bytes(),
        "onnx": SEED_ONNX.read_bytes(),
        "empty": b"",
        "zip": _zip_bytes({"a.txt": b"hello"}),
    }


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


SEEDS = seeds()


def file_bytes(own: list[str]) -> st.SearchStrategy[bytes]:
    """A file for a loader whose valid files are the seeds ``own``: mostly one of them mutated,
    sometimes another kind's seed (a wrong type under this suffix), mutated too."""
    names = st.sampled_from(own) | st.sampled_from(sorted(SEEDS))
    return st.builds(lambda name, edits, cut: mutate(SEEDS[name], edits, cut), names, EDITS, TRUNCATE)


# ---------------------------------------------------------------------------------------------
# Data: .npz/.npy, image folders, .txt

SPEC_SETS = {
    "image": [TensorSpec("x", ["batch", 1, 8, 8], "float32")],
    "static": [TensorSpec("x", [1, 1, 8, 8], "float32")],
    "int_tokens": [TensorSpec("input_ids", ["batch", "sequence"], "int64")],
    "two_inputs": [TensorSpec("x", ["batch", 1, 8, 8]), TensorSpec("sr", [], "int64")],
}


def _load_data(path: Path, specs_name: str, max_samples: int | None, preprocess: str | None = None) -> None:
    from edgeport.data import load_dataset, parse_preprocess

    def encoder(sentences: list[str]) -> dict[str, np.ndarray]:
        width = max(len(s) for s in sentences)
        return {"input_ids": np.array([[ord(c) % 1000 for c in s.ljust(width)] for s in sentences], np.int64)}

    specs = SPEC_SETS[specs_name]
    text = encoder if specs_name == "int_tokens" else None
    dataset = load_dataset(str(path), specs, max_samples, parse_preprocess(preprocess), text_encoder=text)
    for _ in dataset.batches(2):
        pass


DATA_ARGS = st.tuples(st.sampled_from(sorted(SPEC_SETS)), st.none() | st.integers(1, 5))


def fuzz_array_bytes(suffix: str, count: Callable[[str], None], default: int) -> None:
    """Mutated ``.npz``/``.npy`` files (and other kinds under that suffix) through load_dataset."""

    @settings(FUZZ, max_examples=examples(default))
    @given(data=file_bytes(["npz", "npz_ragged", "npy"]), args=DATA_ARGS)
    def fuzz(data, args):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"data{suffix}"
            path.write_bytes(data)
            count(outcome(lambda: _load_data(path, *args)))

    fuzz()


_DTYPES = ["float32", "float64", "float16", "uint8", "int8", "int32", "int64", "bool", "complex64", "U3", "V4", "M8[s]"]
_KEYS = ["x", "y", "labels", "inputs", "sr", "x/0", "x/1", "x/3", "x/a", "/0", "y/0", "input_ids", "input_ids/0"]
_ARRAY = st.tuples(
    st.sampled_from(_KEYS),
    st.sampled_from(_DTYPES),
    st.lists(st.integers(0, 9), max_size=5),
    st.sampled_from(["random", "nan", "inf", "zeros", "huge"]),
    st.booleans(),  # Fortran order
)


def _make_array(dtype: str, shape: list[int], fill: str, fortran: bool) -> np.ndarray:
    rng = np.random.default_rng(len(shape))
    array = np.zeros(shape, dtype=dtype)
    if array.dtype.kind in "fc":
        with np.errstate(over="ignore"):  # 1e30 as float16: inf, on purpose
            array[...] = {"random": 1.0, "nan": np.nan, "inf": np.inf, "zeros": 0.0, "huge": 1e30}[fill]
        if fill == "random" and array.size:
            array[...] = rng.standard_normal(shape).astype(dtype)
    elif array.dtype.kind in "iu" and fill == "huge":
        array[...] = np.iinfo(array.dtype).max
    return np.asfortranarray(array) if fortran else array


def fuzz_array_contents(count: Callable[[str], None], default: int) -> None:
    """Valid ``.npz`` files of odd contents (names, dtypes, shapes, NaN, ragged keys) through load_dataset."""

    @settings(FUZZ, max_examples=examples(default))
    @given(arrays=st.lists(_ARRAY, min_size=0, max_size=5), args=DATA_ARGS, preprocess=_PREPROCESS)
    def fuzz(arrays, args, preprocess):
        members = {key: _make_array(dtype, shape, fill, fortran) for key, dtype, shape, fill, fortran in arrays}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "data.npz"
            path.write_bytes(_npz_bytes(**members))
            count(outcome(lambda: _load_data(path, *args, preprocess)))

    fuzz()


_PREPROCESS = st.sampled_from([None, "scale=1/255", "layout=NHWC", "mean=0.5;std=0.5", "resize=4,4", "mean=1,2,3"])
_IMAGE_MODES = ["RGB", "L", "RGBA", "CMYK", "P", "1", "I", "F", "I;16", "LA", "YCbCr"]
_IMAGE = st.one_of(
    st.tuples(
        st.just("image"),
        st.sampled_from(_IMAGE_MODES),
        st.tuples(st.integers(1, 12), st.integers(1, 12)),
        st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"]),
    ),
    st.tuples(st.just("bytes"), file_bytes(["png", "jpeg"]), st.just(0), st.just("")),
)
_IMAGE_NAMES = ["a.png", "b.jpg", "c.JPEG", "d.bmp", "e.gif", "f.tiff", "g.webp", "cls/h.png", "cls2/i.jpg"]


def _write_image(path: Path, item: tuple) -> None:
    kind, first, size, fmt = item
    if kind == "bytes":
        path.write_bytes(first)
        return
    try:
        path.write_bytes(_image_bytes(first, size, fmt))
    except (OSError, ValueError, KeyError):
        path.write_bytes(b"")  # a mode that format cannot store: a zero-size file instead


def fuzz_image_folders(count: Callable[[str], None], default: int) -> None:
    """Folders of images: valid ones of odd modes and sizes, corrupt, truncated, zero-size, foreign."""

    @settings(FUZZ, max_examples=examples(default))
    @given(
        images=st.lists(st.tuples(st.sampled_from(_IMAGE_NAMES), _IMAGE), min_size=0, max_size=4),
        args=DATA_ARGS,
        preprocess=_PREPROCESS,
    )
    def fuzz(images, args, preprocess):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "images"
            folder.mkdir()
            for name, item in images:
                path = folder / name
                path.parent.mkdir(exist_ok=True)
                _write_image(path, item)
            count(outcome(lambda: _load_data(folder, *args, preprocess)))

    fuzz()


_TEXT = st.one_of(
    file_bytes(["txt"]),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.tuples(st.integers(0, 300_000), st.sampled_from([b"a", b"\n", b" ", b"\xff", b"\x00", "é".encode()])).map(
        lambda t: t[1] * t[0]
    ),
)


def fuzz_text(count: Callable[[str], None], default: int) -> None:
    """``.txt`` sentence files: binary garbage, huge lines, empty, mutated sentences."""

    @settings(FUZZ, max_examples=examples(default))
    @given(data=_TEXT, args=DATA_ARGS)
    def fuzz(data, args):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sentences.txt"
            path.write_bytes(data)
            count(outcome(lambda: _load_data(path, *args)))

    fuzz()


# ---------------------------------------------------------------------------------------------
# Structured files (YAML, JSON): values replaced anywhere in a valid document.

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["int8", "fp16", "none", "onnx", "tflite", "coreml", "int4-weight", "palettize-4", "../x"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def key_paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested mapping/list (the places a value can be replaced)."""
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += key_paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += key_paths(value, (*prefix, index))
    return found


def replace(data: Any, replacements: list[tuple[tuple, Any]], delete: bool) -> Any:
    """A deep copy of ``data`` with the value at each path replaced (or its key deleted)."""
    data = copy.deepcopy(data)
    for path, value in replacements:
        if not path:
            data = value
            continue
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            if delete and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed that place
    return data


def structured(seed: Any, dump: Callable[[Any], bytes], own: list[str]) -> st.SearchStrategy[bytes]:
    """Documents: ``seed`` with values replaced or keys deleted, or bytes of a mutated file."""
    paths = key_paths(seed)
    replaced = st.builds(
        lambda r, d: dump(replace(seed, r, d)),
        st.lists(st.tuples(st.sampled_from(paths), VALUES), min_size=1, max_size=3),
        st.booleans(),
    )
    return replaced | file_bytes(own)


def _yaml_dump(data: Any) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")


def _json_dump(data: Any) -> bytes:
    return json.dumps(data).encode("utf-8", "surrogatepass")


def _profile_use(path: Path) -> None:
    """What the pipeline does with a profile file: load it, resolve every scheme for every format."""
    from edgeport.core.registry import format_names
    from edgeport.profiles import resolve_profile, resolve_scheme
    from edgeport.profiles.display import profile_table

    profile, _ = resolve_profile(str(path))
    profile.as_dict()
    profile_table(profile)
    for fmt in format_names():
        for scheme in ("none", "fp16", "int8", "int8-dynamic", "int8-weight", "int4-weight", "int16", "palettize-4"):
            try:
                resolve_scheme(profile, scheme, fmt)
            except EdgeportError:
                continue


def fuzz_profiles(count: Callable[[str], None], default: int) -> None:
    """Device profile YAML (every shipped profile as a seed) through resolution."""
    from edgeport.profiles import PROFILE_DIR

    documents = st.sampled_from(sorted(PROFILE_DIR.glob("*.yaml"))).flatmap(
        lambda p: structured(yaml.safe_load(p.read_text()), _yaml_dump, ["yaml"])
    )

    @settings(FUZZ, max_examples=examples(default))
    @given(data=documents)
    def fuzz(data):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "device.yaml"
            path.write_bytes(data)
            count(outcome(lambda: _profile_use(path)))

    fuzz()


def _plan_seed() -> tuple[Any, dict]:
    import onnx

    from edgeport.core.plan import uniform_plan
    from edgeport.profiles import resolve_profile

    model = onnx.load(str(SEED_ONNX))
    plan = uniform_plan(model, "int8", resolve_profile("x86-avx2")[0])
    return model, json.loads(plan.to_json())


def fuzz_plans(count: Callable[[str], None], default: int) -> None:
    """``precision_plan.json`` files through load_plan for every output format."""
    from edgeport.core.plan import load_plan
    from edgeport.core.registry import format_names

    model, seed = _plan_seed()
    SEEDS["plan"] = _json_dump(seed)

    @settings(FUZZ, max_examples=examples(default))
    @given(data=structured(seed, _json_dump, ["plan", "json"]), fmt=st.sampled_from([None, *format_names()]))
    def fuzz(data, fmt):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "precision_plan.json"
            path.write_bytes(data)
            count(outcome(lambda: load_plan(path, copy.deepcopy(model), fmt)))

    fuzz()


CONFIG_SEED = {
    "version": 1,
    "output_dir": "out",
    "defaults": {"eval_samples": 16, "latency_runs": 5},
    "gates": {"max_accuracy_drop": 1.0},
    "regression": {"accuracy_drop": 0.5, "latency_pct": 20, "size_pct": 5},
    "models": [
        {"name": "tiny", "path": "model.onnx", "calibration_data": "calib.npz", "targets": ["onnx-int8"]},
        {"path": "model.onnx", "name": "tiny2", "input_shape": "1,1,8,8", "preprocess": "scale=1"},
    ],
    "targets": [
        {"name": "onnx-int8", "format": "onnx", "quantization": "int8", "profile": "x86-avx2"},
        {"format": "onnx", "quantization": "fp16", "profile": "generic-cpu", "gates": {"max_latency_ms": 2.0}},
    ],
}


def fuzz_build_configs(count: Callable[[str], None], default: int) -> None:
    """``edgeport.yaml`` build configs (beside a model, data and a profile) through load_config."""
    from edgeport.ci.config import load_config

    SEEDS["config"] = _yaml_dump(CONFIG_SEED)

    @settings(FUZZ, max_examples=examples(default))
    @given(data=structured(CONFIG_SEED, _yaml_dump, ["config", "yaml"]))
    def fuzz(data):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            shutil.copy(SEED_ONNX, root / "model.onnx")
            (root / "calib.npz").write_bytes(SEEDS["npz"])
            path = root / "edgeport.yaml"
            path.write_bytes(data)
            count(outcome(lambda: load_config(path)))

    fuzz()


# ---------------------------------------------------------------------------------------------
# The bundle `edgeport verify` reads: manifest.json and reference.npz


def make_bundle(folder: Path) -> Path:
    """A small int8 ONNX bundle of the seed model in ``folder``/bundle; return its path."""
    from edgeport.api import convert

    rng = np.random.default_rng(0)
    np.savez(folder / "calib.npz", x=rng.standard_normal((8, 1, 8, 8)).astype(np.float32))
    result = convert(
        str(SEED_ONNX),
        quantization="int8",
        calibration_data=str(folder / "calib.npz"),
        eval_data=str(folder / "calib.npz"),
        output_dir=str(folder / "bundle"),
        latency_runs=2,
    )
    return Path(result.bundle_dir)


def _rehash(bundle: Path, manifest: dict, name: str) -> None:
    """Make the manifest's entry for ``name`` match the file as it is now (a consistent bundle)."""
    from edgeport.core.hashing import sha256_file

    files = manifest.get("files")
    path = bundle / name
    if isinstance(files, dict) and path.is_file():
        files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _verify(bundle: Path) -> None:
    from edgeport.verify.bundle_check import verify_bundle

    verify_bundle(bundle, runs=1, warmup=0)


def fuzz_manifests(bundle: Path, count: Callable[[str], None], default: int) -> None:
    """``manifest.json`` of a valid bundle, values replaced or bytes mutated, through verify."""
    seed = json.loads((bundle / "manifest.json").read_text())
    SEEDS["manifest"] = _json_dump(seed)

    @settings(FUZZ, max_examples=examples(default))
    @given(data=structured(seed, _json_dump, ["manifest", "json"]))
    def fuzz(data):
        with tempfile.TemporaryDirectory() as tmp:
            copy_ = Path(shutil.copytree(bundle, Path(tmp) / "bundle"))
            (copy_ / "manifest.json").write_bytes(data)
            count(outcome(lambda: _verify(copy_)))

    fuzz()


def _reference_members(bundle: Path) -> dict[str, np.ndarray]:
    with np.load(bundle / "reference.npz") as data:
        return {k: data[k] for k in data.files}


def fuzz_references(bundle: Path, count: Callable[[str], None], default: int) -> None:
    """``reference.npz`` of a valid bundle, mutated, replaced by other arrays or other kinds of
    file, with the manifest's hash updated to match (so the reader, not the hash check, sees it)."""
    members = _reference_members(bundle)
    SEEDS["reference"] = _npz_bytes(**members)
    changed = st.lists(
        st.tuples(st.sampled_from(sorted(members) + ["labels", "inputs/other"]), _ARRAY), min_size=1, max_size=3
    ).map(lambda edits: _npz_bytes(**{**members, **{key: _make_array(d, s, f, o) for key, (_, d, s, f, o) in edits}}))
    dropped = st.sets(st.sampled_from(sorted(members)), min_size=1).map(
        lambda gone: _npz_bytes(**{k: v for k, v in members.items() if k not in gone})
    )

    @settings(FUZZ, max_examples=examples(default))
    @given(data=file_bytes(["reference"]) | changed | dropped)
    def fuzz(data):
        with tempfile.TemporaryDirectory() as tmp:
            copy_ = Path(shutil.copytree(bundle, Path(tmp) / "bundle"))
            (copy_ / "reference.npz").write_bytes(data)
            manifest = json.loads((copy_ / "manifest.json").read_text())
            _rehash(copy_, manifest, "reference.npz")
            (copy_ / "manifest.json").write_text(json.dumps(manifest))
            count(outcome(lambda: _verify(copy_)))

    fuzz()


# ---------------------------------------------------------------------------------------------
# All of them, counted (bench/fuzz_files.py)

FUZZERS: dict[str, Callable[[Callable[[str], None], int], None]] = {
    "npz": lambda count, n: fuzz_array_bytes(".npz", count, n),
    "npy": lambda count, n: fuzz_array_bytes(".npy", count, n),
    "npz_contents": fuzz_array_contents,
    "image_folder": fuzz_image_folders,
    "txt": fuzz_text,
    "profile_yaml": fuzz_profiles,
    "precision_plan": fuzz_plans,
    "build_config": fuzz_build_configs,
}
BUNDLE_FUZZERS = {"manifest": fuzz_manifests, "reference_npz": fuzz_references}


class Tally:
    """Outcomes per fuzzer: ok / exit 2, 3, 4 / internal errors (with up to 10 examples)."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = {}
        self.internal: dict[str, list[str]] = {}

    def counter(self, name: str) -> Callable[[str], None]:
        counts = self.counts.setdefault(name, Counter())
        found = self.internal.setdefault(name, [])

        def count(result: str) -> None:
            if result.startswith("internal"):
                counts["internal"] += 1
                if result not in found and len(found) < 10:
                    found.append(result)
            else:
                counts[result] += 1

        return count


def strict(result: str) -> None:
    """The tests' counter: any internal error fails (with what it was)."""
    assert not result.startswith("internal"), result
