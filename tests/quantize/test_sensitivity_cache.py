"""Unit tests of the per-layer sensitivity cache: keyed by content, robust to bad entries."""

from __future__ import annotations

import numpy as np

from edgeport.core.plan import uniform_plan
from edgeport.profiles import resolve_profile
from edgeport.quantize.sensitivity import LayerSensitivity
from edgeport.quantize.sensitivity_cache import (
    load_cached_sensitivity,
    sensitivity_cache_path,
    store_cached_sensitivity,
)
from tests.core.test_plan import _model


def test_the_key_follows_model_plan_format_and_data(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPORT_CACHE_DIR", str(tmp_path))
    profile = resolve_profile("x86-avx2")[0]
    model = _model()
    plan = uniform_plan(model, "int8", profile)
    feeds = [{"x": np.ones((1, 8), np.float32)}]
    path = sensitivity_cache_path(model, plan, "onnx", feeds)
    assert path.parent == tmp_path / "sensitivity"
    assert sensitivity_cache_path(model, plan, "onnx", [{"x": np.ones((1, 8), np.float32)}]) == path
    others = {
        sensitivity_cache_path(_model(layers=2), uniform_plan(_model(layers=2), "int8", profile), "onnx", feeds),
        sensitivity_cache_path(model, uniform_plan(model, "int8-dynamic", profile), "onnx", feeds),
        sensitivity_cache_path(model, plan, "tflite", feeds),
        sensitivity_cache_path(model, plan, "onnx", [{"x": np.zeros((1, 8), np.float32)}]),
    }
    assert path not in others and len(others) == 4


def test_round_trip_and_bad_entries(tmp_path):
    entry = {"conv": LayerSensitivity("conv", "Conv", 31.5, 1200, depthwise=True)}
    path = tmp_path / "sensitivity" / "k.json"
    store_cached_sensitivity(path, entry)
    assert load_cached_sensitivity(path) == entry
    data = tmp_path / "sensitivity" / "k" / "data"  # the store's entry folder for the name k.json
    data.write_text('{"conv": {"layer": "conv"')  # truncated
    notes: list[str] = []
    assert load_cached_sensitivity(path, notes) is None
    assert "does not match its sha256" in notes[0] and not data.exists()  # removed, with a note
    store_cached_sensitivity(path, entry)  # rebuilt
    assert load_cached_sensitivity(path) == entry
    assert load_cached_sensitivity(tmp_path / "sensitivity" / "absent.json") is None
    blocked = tmp_path / "file"
    blocked.write_text("")
    store_cached_sensitivity(blocked / "sub" / "k.json", entry)  # cannot be written: skipped, no error


def test_an_intact_entry_that_does_not_parse_is_removed(tmp_path):
    from edgeport.core.cache_store import CacheStore

    path = tmp_path / "sensitivity" / "k.json"
    CacheStore(tmp_path, "sensitivity", limit=None).put_bytes("k", b"[1, 2]")  # an older format
    notes: list[str] = []
    assert load_cached_sensitivity(path, notes) is None
    assert "unusable content" in notes[0] and not (tmp_path / "sensitivity" / "k").exists()
