"""edgeport.yaml targets may name a catalogue device: it resolves per target format, and the
cache key follows the device's facts, not only its engine profile's file."""

from __future__ import annotations

import pytest
import yaml

from edgeport.ci.cache import cache_key, key_inputs
from edgeport.ci.config import load_config
from edgeport.profiles.devices.catalogue import DATA_DIR, ENV_DIR
from tests.ci.project import ONE_MODEL, refusal, write_project

CONFIG = (
    ONE_MODEL
    + """
targets:
  - name: pixel-gpu
    format: tflite
    quantization: int8
    profile: Pixel 8
  - name: pixel-cpu
    format: tflite
    quantization: int8
    profile: pixel-8:cpu
"""
)


def _keys(tmp_path, text: str = CONFIG) -> dict[str, str]:
    jobs = load_config(write_project(tmp_path, text)).jobs
    return {job.target.name: cache_key(key_inputs(job)) for job in jobs}


def test_device_targets_resolve_and_key_by_accelerator(tmp_path) -> None:
    keys = _keys(tmp_path)
    assert keys["pixel-gpu"] != keys["pixel-cpu"]


def test_changed_device_facts_change_the_key(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _keys(tmp_path)
    pixel = next(d for d in yaml.safe_load((DATA_DIR / "android.yaml").read_text())["devices"] if d["id"] == "pixel-8")
    pixel["gpu"] = {**pixel["gpu"], "name": "a corrected GPU name"}
    user = tmp_path / "devices"
    user.mkdir()
    (user / "fix.yaml").write_text(yaml.safe_dump({"schema_version": 1, "devices": [pixel]}))
    monkeypatch.setenv(ENV_DIR, str(user))
    after = _keys(tmp_path)
    assert after["pixel-gpu"] != before["pixel-gpu"]


def test_device_that_cannot_run_the_format_is_refused_at_its_line(tmp_path) -> None:
    text = CONFIG.replace(
        "format: tflite\n    quantization: int8\n    profile: Pixel 8",
        "format: coreml\n    quantization: int8\n    profile: Pixel 8",
    )
    message = refusal(tmp_path, text)
    assert "Core ML runs only on Apple devices" in message
