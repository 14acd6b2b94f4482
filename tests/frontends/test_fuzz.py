"""Fuzzing (hypothesis, derandomized, a bounded number of cases): mutated ONNX files through
ingestion and normalization, mutated profile YAML through the profile loader. The only allowed
outcomes are success or an EdgeportError: never another exception, a hang or a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeport.core import limits
from edgeport.core.errors import EdgeportError
from edgeport.data import synthetic_dataset
from edgeport.frontends.normalize import normalize
from edgeport.frontends.onnx import load_onnx_file
from edgeport.options.recipe import Recipe
from edgeport.profiles.schema import load_profile_file
from tests.conftest import REPO
from tests.fuzz_files import EDIT, mutate

SEED_ONNX = REPO / "tests" / "data" / "bad" / "valid.onnx"
SEED_PROFILE = REPO / "edgeport" / "profiles" / "generic-cpu.yaml"
FUZZ_MEMORY = "256MB"  # a mutated dim must be refused, not allocated
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# One edit of a byte string: (kind, position as a fraction of the length, byte value).
def ingest_and_normalize(path: Path) -> None:
    """What the pipeline does with an ONNX file up to the checked, simplified model: load and
    validate it, refuse inputs over the budget, make inputs, run and check it."""
    recipe = Recipe(str(path), quantization="none", max_memory=FUZZ_MEMORY)
    source, model = load_onnx_file(path, recipe.source)
    first = source.inputs[0].shape[0] if source.inputs and source.inputs[0].shape else 1
    batch = first if isinstance(first, int) else 2  # the pipeline's batch: the declared one, if any
    limits.check_inputs(source.inputs, batch, limits.parse_memory(FUZZ_MEMORY))
    feeds = synthetic_dataset(source.inputs, batch, 0, batch).batch(0, batch)
    normalize(source, model, feeds, recipe.source)


def test_the_seeds_are_valid(tmp_path):
    ingest_and_normalize(SEED_ONNX)
    assert load_profile_file(SEED_PROFILE).name == "generic-cpu"


def assert_loads_or_is_refused(load, path: Path) -> None:
    """``load(path)`` succeeds or raises an EdgeportError with a one-line message (any other
    exception fails the test)."""
    try:
        load(path)
    except EdgeportError as exc:
        assert exc.message.strip() and "\n" not in exc.one_line()


# Byte edits: the file's framing (protobuf, YAML, UTF-8) breaks; (seed, loader, examples).
BYTE_TARGETS = {"onnx": (SEED_ONNX, ingest_and_normalize, 20), "profile": (SEED_PROFILE, load_profile_file, 30)}


@pytest.mark.parametrize("target", list(BYTE_TARGETS))
def test_mutated_bytes_load_or_are_refused(target, tmp_path):
    seed, load, examples = BYTE_TARGETS[target]

    @settings(FUZZ, max_examples=examples)
    @given(edits=st.lists(EDIT, min_size=1, max_size=6), truncate=st.none() | st.floats(0.5, 1, allow_nan=False))
    def fuzz(edits, truncate):
        path = tmp_path / f"mutated{seed.suffix}"
        path.write_bytes(mutate(seed.read_bytes(), edits, truncate))
        assert_loads_or_is_refused(load, path)

    fuzz()


# Edits of the model's structure (most byte edits only break the protobuf framing): the graph
# parses and the checks and runtimes below the parser get the damage.
_OPS = ["Relu", "Conv", "Gemm", "Add", "Reshape", "Softmax", "MatMul", "Flatten", "Identity", "Nope", "Loop", "LSTM"]
_NAMES = ["x", "y", "conv_w", "conv_b", "fc_w", "c", "r", "f", "missing", ""]
_STRUCTURAL = st.one_of(
    st.tuples(st.just("op_type"), st.integers(0, 3), st.sampled_from(_OPS)),
    st.tuples(st.just("input_dim"), st.integers(0, 3), st.sampled_from([0, 1, 2, 3, 9, 10**6, 10**12, 2**62])),
    st.tuples(st.just("dim_param"), st.integers(0, 3), st.sampled_from(["batch", "n", ""])),
    st.tuples(st.just("elem_type"), st.integers(0, 4), st.integers(0, 25)),
    st.tuples(st.just("attribute"), st.integers(0, 3), st.integers(-5, 10**9)),
    st.tuples(st.just("drop_node"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("duplicate_node"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("rewire"), st.integers(0, 3), st.sampled_from(_NAMES)),
    st.tuples(st.just("opset"), st.just(0), st.integers(1, 30)),
    st.tuples(st.just("ir_version"), st.just(0), st.integers(0, 12)),
    st.tuples(st.just("initializer_dims"), st.integers(0, 3), st.lists(st.integers(0, 100), max_size=4)),
)


def mutate_structure(model, edits: list[tuple]) -> None:
    """Apply structural ``edits`` to the ModelProto ``model`` in place."""
    from onnx import helper

    graph = model.graph
    for kind, index, value in edits:
        nodes = graph.node
        node = nodes[index % len(nodes)] if len(nodes) else None
        if kind == "op_type" and node is not None:
            node.op_type = value
        elif kind in ("input_dim", "dim_param") and graph.input:
            dims = graph.input[0].type.tensor_type.shape.dim
            if dims:
                dim = dims[index % len(dims)]
                if kind == "input_dim":
                    dim.dim_value = value
                else:
                    dim.dim_param = value
        elif kind == "elem_type":
            tensors = [*graph.initializer]
            if index < len(tensors):
                tensors[index].data_type = value
            elif graph.input:
                graph.input[0].type.tensor_type.elem_type = value
        elif kind == "attribute" and node is not None:
            if node.attribute and node.attribute[0].type == node.attribute[0].INT:
                node.attribute[0].i = value
            else:
                node.attribute.append(helper.make_attribute("axis", value))
        elif kind == "drop_node" and node is not None:
            nodes.remove(node)
        elif kind == "duplicate_node" and node is not None:
            nodes.append(type(node).FromString(node.SerializeToString()))
        elif kind == "rewire" and node is not None and node.input:
            node.input[index % len(node.input)] = value
        elif kind == "opset":
            model.opset_import[0].version = value
        elif kind == "ir_version":
            model.ir_version = value
        elif kind == "initializer_dims" and graph.initializer:
            tensor = graph.initializer[index % len(graph.initializer)]
            del tensor.dims[:]
            tensor.dims.extend(value)


@settings(FUZZ, max_examples=40)
@given(edits=st.lists(_STRUCTURAL, min_size=1, max_size=3))
def test_structurally_mutated_onnx_is_converted_or_refused(edits, tmp_path):
    import onnx

    model = onnx.load(str(SEED_ONNX))
    mutate_structure(model, edits)
    path = tmp_path / "mutated.onnx"
    path.write_bytes(model.SerializeToString())
    assert_loads_or_is_refused(ingest_and_normalize, path)


# YAML values a hand-edited profile could hold in any field.
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["int8", "fp16", "none", "onnx", "xnnpack", "uint8", "CPUExecutionProvider"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _paths(data, prefix=()) -> list[tuple]:
    """Every key path of a nested mapping/list (the places a value can be replaced)."""
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


SEED_DATA = yaml.safe_load(SEED_PROFILE.read_text())
SEED_PATHS = _paths(SEED_DATA)


@settings(FUZZ, max_examples=30)
@given(
    replacements=st.lists(st.tuples(st.sampled_from(SEED_PATHS), _VALUES), min_size=1, max_size=3),
    delete=st.booleans(),
)
def test_profile_with_fields_replaced_loads_or_is_refused(replacements, delete, tmp_path):
    import copy

    data = copy.deepcopy(SEED_DATA)
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
    file = tmp_path / "profile.yaml"
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        profile = load_profile_file(file)
    except EdgeportError:
        return
    # What loads is usable: every cost positive and finite.
    costs = [c for table in profile.op_classes.values() for c in table.values()]
    assert all(np.isfinite(c) and c > 0 for c in costs)


@pytest.mark.parametrize("text", ["[" * 5000, "a: &a [*a]", "\udcff: 1", "schema_version: 2\n" + "x: " * 3000])
def test_pathological_yaml_is_refused(text, tmp_path):
    path = tmp_path / "weird.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(EdgeportError):
        load_profile_file(path)
