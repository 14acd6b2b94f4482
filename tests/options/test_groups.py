"""The option groups: each stage sees its own fields of the Recipe, frozen."""

from __future__ import annotations

import dataclasses

import pytest

from edgeport.core.model import SourceModel, TensorSpec
from edgeport.options.groups import (
    GROUPS,
    CoreMLOptions,
    DataOptions,
    PruneOptions,
    QuantizeOptions,
    RunOptions,
    SourceOptions,
    TFLiteOptions,
    VerifyOptions,
    group_fields,
    make_group,
)
from edgeport.options.recipe import Recipe, parse_input_shapes

RECIPE_FIELDS = {item.name for item in dataclasses.fields(Recipe)}


def _recipe(**options) -> Recipe:
    return Recipe(input_model="model.onnx", **options)


def test_source_group_has_exactly_the_source_fields():
    recipe = _recipe(input_shape=parse_input_shapes("1,3,8,8"), dynamic_batch=True, task="feature-extraction", opset=17)
    source = recipe.source
    assert isinstance(source, SourceOptions)
    assert set(group_fields(SourceOptions)) == {
        "input_model",
        "input_shape",
        "input_dtype",
        "dynamic_batch",
        "model_class",
        "allow_pickle",
        "task",
        "sequence_length",
        "opset",
        "max_memory",
        "parity_rtol",
        "parity_atol",
        "output_format",
        "optimize_for",
        "quantization",
    }
    assert source.input_shape[0].dims == [1, 3, 8, 8] and source.dynamic_batch and source.opset == 17
    for other in ("io_dtype", "coreml_image_input", "calibration_data", "prune", "latency_runs"):
        assert not hasattr(source, other)


@pytest.mark.parametrize(
    ("stage", "group", "expected"),
    [
        ("data", DataOptions, {"calibration_data", "eval_data", "preprocess", "calibration_samples", "eval_samples"}),
        ("quantize", QuantizeOptions, {"quantization", "precision_plan", "search_budget"}),
        ("prune", PruneOptions, {"prune", "finetune_steps", "seed"}),
        ("verify", VerifyOptions, {"threads", "latency_runs", "warmup_runs", "parity_rtol", "metric"}),
        ("run", RunOptions, {"output_format", "optimize_for", "output_dir", "max_memory"}),
        ("tflite", TFLiteOptions, {"io_dtype", "allow_pickle"}),
        ("coreml", CoreMLOptions, {"coreml_image_input", "preprocess"}),
    ],
)
def test_each_group_holds_its_stage_fields(stage, group, expected):
    recipe = _recipe(output_format="coreml", coreml_image_input=True, preprocess="scale=1/255", seed=7)
    built = recipe.options_for(stage)
    assert type(built) is group and GROUPS[stage] is group
    assert expected <= set(group_fields(group)) <= RECIPE_FIELDS
    assert all(getattr(built, name) == getattr(recipe, name) for name in group_fields(group))


def test_properties_match_options_for():
    recipe = _recipe(prune="magnitude:0.5", finetune_steps=0, io_dtype="int8")
    assert recipe.source == recipe.options_for("source")
    assert recipe.data == recipe.options_for("data")
    assert recipe.quantize == recipe.options_for("quantize")
    assert recipe.pruning == recipe.options_for("prune")
    assert recipe.verify == recipe.options_for("verify")
    assert recipe.run == recipe.options_for("run")
    assert recipe.tflite == recipe.options_for("tflite") and recipe.tflite.io_dtype == "int8"
    assert recipe.coreml == recipe.options_for("coreml")
    with pytest.raises(KeyError, match="no option group"):
        recipe.options_for("nonsense")


def test_every_recipe_field_belongs_to_a_group():
    grouped = {name for group in GROUPS.values() for name in group_fields(group)}
    assert grouped == RECIPE_FIELDS


def test_groups_are_frozen_and_carry_no_defaults():
    data = _recipe().data
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.seed = 1  # type: ignore[misc]
    for group in GROUPS.values():  # defaults live in Recipe only
        assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(group)), group
    assert make_group(DataOptions, data) is data


def test_ingest_hands_the_loader_only_the_source_group(monkeypatch):
    """A stage function gets its group, not the Recipe: the torch loader sees SourceOptions."""
    from edgeport import frontends
    from edgeport.frontends import torch as torch_in

    seen = []

    def fake_loader(ref, options):
        seen.append(options)
        return SourceModel("pytorch", "factory", ref, None, [TensorSpec("x", [1, 2], "float32")])

    monkeypatch.setattr(torch_in, "load_torch_factory", fake_loader)
    recipe = _recipe(output_format="tflite", io_dtype="int8")
    recipe.input_model = "some_package.models:make_net"
    source, onnx_model = frontends.ingest(recipe.source)
    assert onnx_model is None and source.path == "some_package.models:make_net"
    assert type(seen[0]) is SourceOptions and seen[0] == recipe.source
    assert not hasattr(seen[0], "io_dtype")


def test_normalize_hands_the_exporter_only_the_source_group():
    """A frontend's own exporter (TensorFlow, Hugging Face) is called with SourceOptions."""
    from edgeport.frontends.normalize import normalize

    seen = []

    class Stop(Exception):
        pass

    def to_onnx(feeds, options):
        seen.append(options)
        raise Stop

    source = SourceModel("tensorflow", "keras", "m.keras", None, [], to_onnx=to_onnx)
    with pytest.raises(Stop):
        normalize(source, None, {}, _recipe(opset=17).source)
    assert type(seen[0]) is SourceOptions and seen[0].opset == 17
