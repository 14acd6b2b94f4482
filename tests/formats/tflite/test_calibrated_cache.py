"""The calibrated-model cache of a TFLite int8 export (formats/tflite/calibration.py): the model
and its TF input specs are one entry of the cache store, written atomically and checked by
their sha256; a damaged entry is removed with a note, so the child calibrates again."""

from __future__ import annotations

from edgeport.formats.tflite.calibration import load_calibrated, store_calibrated


def test_the_calibrated_model_round_trips_and_a_damaged_one_is_dropped(tmp_path):
    cache = tmp_path / "calibrated-tflite" / "0123abcd.tflite"
    specs = [{"name": "x", "shape": [1, 28, 28, 1], "dtype": "float32"}]
    notes: list[str] = []
    assert load_calibrated(cache, notes) is None and notes == []  # not built yet
    store_calibrated(cache, b"TFL3" + bytes(1000), specs)
    assert load_calibrated(cache, notes) == (b"TFL3" + bytes(1000), specs)
    model = tmp_path / "calibrated-tflite" / "0123abcd" / "data" / "model.tflite"
    model.write_bytes(b"TFL3" + bytes(10))  # a child killed while writing, a disk error
    assert load_calibrated(cache, notes) is None
    assert "does not match its sha256" in notes[0] and not model.exists()
    store_calibrated(cache, b"TFL3" + bytes(1000), specs)
    assert load_calibrated(cache, notes) is not None and len(notes) == 1
