"""--max_size: a Recipe field with its default written once, parsed up front with one-line
errors, a CLI flag and an edgeport.convert keyword, and part of the quantize option group."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgeport.api import convert
from edgeport.cli.main import main
from edgeport.core.errors import InputError
from edgeport.options.recipe import Recipe, default_of


def test_default_is_none_and_reaches_the_quantize_group():
    assert default_of("max_size") is None
    recipe = Recipe(input_model="m.onnx", max_size="10MB")
    assert recipe.quantize.max_size == "10MB"


@pytest.mark.parametrize("value", ["big", "10XB", "-3MB", "0"])
def test_bad_values_fail_before_anything_runs(value):
    with pytest.raises(InputError) as info:
        Recipe(input_model="m.onnx", max_size=value)
    assert "--max_size" in info.value.one_line() and "\n" not in info.value.one_line()
    with pytest.raises(InputError, match="--max_size"):
        convert("does-not-matter.onnx", max_size=value)


def test_cli_flag_exits_2_on_a_bad_value(tmp_path):
    result = CliRunner().invoke(main, ["convert", "--input_model", str(tmp_path / "m.onnx"), "--max_size", "lots"])
    assert result.exit_code == 2
    assert "--max_size" in result.output and "Traceback" not in result.output
