"""--buckets: the grammar, the canonical spelling the Recipe keeps, and ONNX-only for now."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgeport.cli.main import main
from edgeport.core.errors import InputError
from edgeport.options.buckets import BucketSpec, parse_buckets
from edgeport.options.recipe import Recipe


def test_parses_axis_and_sorted_distinct_sizes():
    assert parse_buckets("seq=64, 16,32,16") == BucketSpec("seq", (16, 32, 64))
    assert parse_buckets("image=224,320").text() == "image=224,320"
    assert parse_buckets(None) is None and parse_buckets("") is None


@pytest.mark.parametrize("value", ["seq", "seq=", "=16,32", "seq=16;32", "seq=0,16", "seq=a,b"])
def test_malformed_buckets_are_one_line_input_errors(value):
    with pytest.raises(InputError, match="--buckets"):
        parse_buckets(value)


def test_recipe_keeps_the_canonical_spelling_and_its_group():
    recipe = Recipe("m.onnx", buckets="sequence=128,16,32")
    assert recipe.buckets == "sequence=16,32,128"
    assert recipe.bucketing.spec == BucketSpec("sequence", (16, 32, 128))
    assert Recipe("m.onnx").bucketing.spec is None


def test_other_formats_are_refused_for_now():
    with pytest.raises(InputError, match="buckets: onnx only for now"):
        Recipe("m.onnx", output_format="tflite", buckets="seq=16,32")


def test_cli_flag_reaches_the_recipe_and_a_bad_one_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["convert", "--input_model", "m.onnx", "--buckets", "seq=16,x"])
    assert result.exit_code == 2
    assert "bad --buckets" in result.output
