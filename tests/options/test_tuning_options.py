"""The tuning flags: --objective, --batch_sizes, --threads as one count or a list, --max_latency_ms."""

from __future__ import annotations

import pytest

from edgeport.cli import main as cli_main
from edgeport.core.errors import InputError
from edgeport.options.groups import GROUPS, TuneOptions
from edgeport.options.recipe import DEFAULT_TUNE_BATCHES, Recipe


def _params(*flags: str) -> dict:
    command = cli_main.main.commands["convert"]
    return command.make_context("convert", ["--input_model", "m.onnx", *flags]).params


def test_default_is_todays_latency_measurement():
    recipe = Recipe(input_model="m.onnx")
    assert (recipe.objective, recipe.batch_sizes, recipe.threads, recipe.thread_sweep) == ("latency", None, 1, [])
    assert not recipe.tuning.active
    assert (recipe.tuning.grid_batches, recipe.tuning.grid_threads) == ([1], [1])


def test_threads_keeps_one_value_and_a_list_is_a_sweep():
    assert _params("--threads", "2")["threads"] == 2
    assert _params("--threads", "1,2")["threads"] == [1, 2]
    one = Recipe(input_model="m.onnx", threads=2)
    assert (one.threads, one.thread_sweep, one.tuning.active) == (2, [], False)
    swept = Recipe(input_model="m.onnx", threads="1,2")
    assert (swept.threads, swept.thread_sweep, swept.tuning.active) == (1, [1, 2], True)
    assert swept.tuning.grid_threads == [1, 2] and swept.verify.threads == 1


def test_throughput_fills_the_default_grid_and_lists_parse():
    recipe = Recipe(input_model="m.onnx", objective="throughput")
    assert recipe.batch_sizes == list(DEFAULT_TUNE_BATCHES) == [1, 2, 4, 8, 16, 32]
    given = Recipe(input_model="m.onnx", batch_sizes="1, 4,16", max_latency_ms=5)
    assert given.tuning == TuneOptions("latency", [1, 4, 16], 1, [], 5, 200, 20) and given.tuning.active
    assert GROUPS["tune"] is TuneOptions and Recipe(input_model="m.onnx", batch_sizes=[8]).batch_sizes == [8]
    params = _params("--objective", "throughput", "--batch_sizes", "1,2,4", "--max_latency_ms", "2.5")
    assert (params["objective"], params["batch_sizes"], params["max_latency_ms"]) == ("throughput", [1, 2, 4], 2.5)


@pytest.mark.parametrize(
    "options",
    [{"objective": "fast"}, {"batch_sizes": "1,0"}, {"batch_sizes": "a,b"}, {"threads": "0"}, {"max_latency_ms": 0}],
)
def test_bad_tuning_values_are_one_line_input_errors(options):
    with pytest.raises(InputError) as caught:
        Recipe(input_model="m.onnx", **options)
    assert "\n" not in str(caught.value)
