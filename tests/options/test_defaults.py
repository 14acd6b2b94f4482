"""One source of defaults: the CLI flags and ``edgeport.convert`` read Recipe's fields."""

from __future__ import annotations

import ast
import inspect
from dataclasses import fields
from pathlib import Path

from edgeport.api import convert
from edgeport.cli import main as cli_main
from edgeport.ops import split_specs
from edgeport.options.recipe import Recipe, default_of, parse_input_dtypes, parse_input_shapes

RECIPE_FIELDS = [item.name for item in fields(Recipe)]
# Given as strings (flags, API keywords) and parsed into the Recipe's form: no value is the default.
PARSED = {
    "input_shape": parse_input_shapes,
    "input_dtype": parse_input_dtypes,
    "custom_ops": split_specs,
    "custom_op_library": split_specs,
}


def _cli_values() -> dict[str, object]:
    """The values ``edgeport convert`` passes on when only --input_model is given."""
    command = cli_main.main.commands["convert"]
    return command.make_context("convert", ["--input_model", "model.onnx"]).params


def test_every_cli_flag_has_recipes_default():
    values = _cli_values()
    backed = [name for name in values if name in RECIPE_FIELDS and name != "input_model"]
    assert len(backed) > 20
    for name in backed:
        if name in PARSED:
            assert PARSED[name](list(values[name])) == default_of(name), name
        else:
            assert values[name] == default_of(name), name


def test_every_recipe_field_is_a_flag_or_api_only_with_a_reason():
    flags = set(_cli_values())
    api_only = cli_main.API_ONLY_OPTIONS
    assert set(RECIPE_FIELDS) == (flags & set(RECIPE_FIELDS)) | set(api_only)
    assert not flags & set(api_only), "an option is both a flag and listed as API-only"
    assert all(len(reason) > 20 for reason in api_only.values())
    assert flags - set(RECIPE_FIELDS) == {"quiet", "debug"}  # display only, not conversion options


def test_cli_writes_no_default_of_its_own():
    """No ``_flag(...)`` in the flag table passes ``default=``: Recipe's field is the one place."""
    tree = ast.parse(Path(cli_main.__file__).read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "_flag"]
    assert len(calls) > 25
    assert [ast.unparse(c) for c in calls if any(k.arg == "default" for k in c.keywords)] == []


def test_api_convert_defaults_equal_recipes():
    parameters = inspect.signature(convert).parameters
    backed = [name for name in parameters if name in RECIPE_FIELDS and name != "input_model"]
    assert {"output_format", "quantization", "optimize_for", "input_shape", "input_dtype"} <= set(backed)
    for name in backed:
        default = parameters[name].default
        if name in PARSED:
            assert PARSED[name](default) == default_of(name), name
        else:
            assert default == default_of(name), name
