"""--cascade / --cascade_threshold: the grammar, the Recipe group, ONNX-only for now, edgeport.yaml."""

from __future__ import annotations

import pytest

from edgeport.core.errors import InputError
from edgeport.options.cascade import parse_cascade
from edgeport.options.recipe import Recipe


def test_parses_fp32_in_one_spelling():
    assert parse_cascade(" FP32 ") == "fp32"
    assert parse_cascade(None) is None and parse_cascade("") is None


@pytest.mark.parametrize("value", ["fp16", "large.onnx", "yes"])
def test_other_large_models_are_one_line_input_errors(value):
    with pytest.raises(InputError, match="--cascade"):
        parse_cascade(value)


def test_recipe_group_and_threshold_checks():
    recipe = Recipe("m.onnx", cascade="fp32", cascade_threshold=0.8)
    assert (recipe.cascading.cascade, recipe.cascading.cascade_threshold) == ("fp32", 0.8)
    assert Recipe("m.onnx").cascading.cascade is None
    with pytest.raises(InputError, match="needs --cascade"):
        Recipe("m.onnx", cascade_threshold=0.5)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        Recipe("m.onnx", cascade="fp32", cascade_threshold=1.5)
    with pytest.raises(InputError, match="cascade: onnx only for now"):
        Recipe("m.onnx", output_format="tflite", cascade="fp32")
    with pytest.raises(InputError, match="--cascade and --buckets"):
        Recipe("m.onnx", cascade="fp32", buckets="seq=16,32")


def test_edgeport_yaml_takes_cascade_per_target_in_its_cache_key(tmp_path):
    from edgeport.ci.cache import cache_key, key_inputs
    from edgeport.ci.config import load_config

    (tmp_path / "m.onnx").write_bytes(b"not read by load_config")
    path = tmp_path / "edgeport.yaml"
    target = "    format: onnx\n    quantization: int8\n    profile: generic-cpu\n"
    path.write_text(
        "version: 1\nmodels:\n  - name: m\n    path: m.onnx\ntargets:\n"
        f"  - name: plain\n{target}  - name: cascaded\n{target}    cascade: FP32\n    cascade_threshold: 0.9\n"
        f"  - name: spelled\n{target}    cascade: fp32\n    cascade_threshold: 0.9\n"
    )
    jobs = {job.target.name: job for job in load_config(path).jobs}
    assert jobs["cascaded"].kwargs["cascade"] == "fp32" and jobs["cascaded"].kwargs["cascade_threshold"] == 0.9
    keys = {name: cache_key(key_inputs(job)) for name, job in jobs.items()}
    assert keys["cascaded"] != keys["plain"] and keys["cascaded"] == keys["spelled"]


def test_route_takes_confidence_or_size_in_one_spelling():
    assert Recipe("m.onnx", cascade="fp32").cascading.route == "confidence"
    assert Recipe("m.onnx", cascade="fp32", route=" Size ").cascading.route == "size"
    with pytest.raises(InputError, match="bad --route 'length'"):
        Recipe("m.onnx", cascade="fp32", route="length")
    with pytest.raises(InputError, match="--route size needs --cascade"):
        Recipe("m.onnx", route="size")
    # A size threshold is a length or an element count, not a probability.
    assert Recipe("m.onnx", cascade="fp32", route="size", cascade_threshold=24).cascade_threshold == 24.0
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        Recipe("m.onnx", cascade="fp32", cascade_threshold=24)


def test_edgeport_yaml_takes_route_per_target_in_its_cache_key(tmp_path):
    from edgeport.ci.cache import cache_key, key_inputs
    from edgeport.ci.config import load_config

    (tmp_path / "m.onnx").write_bytes(b"not read by load_config")
    path = tmp_path / "edgeport.yaml"
    target = "    format: onnx\n    quantization: int8\n    profile: generic-cpu\n    cascade: fp32\n"
    path.write_text(
        "version: 1\nmodels:\n  - name: m\n    path: m.onnx\ntargets:\n"
        f"  - name: confident\n{target}  - name: sized\n{target}    route: Size\n"
        f"  - name: spelled\n{target}    route: size\n"
    )
    jobs = {job.target.name: job for job in load_config(path).jobs}
    assert jobs["sized"].kwargs["route"] == "size" and "route" not in jobs["confident"].kwargs
    keys = {name: cache_key(key_inputs(job)) for name, job in jobs.items()}
    assert keys["sized"] != keys["confident"] and keys["sized"] == keys["spelled"]
