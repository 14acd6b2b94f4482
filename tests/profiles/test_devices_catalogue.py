"""The device catalogue: schema validation, the shipped files, user files (env var and paths), lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgeport.core.errors import InputError
from edgeport.profiles.devices.catalogue import (
    DATA_DIR,
    ENV_DIR,
    close_matches,
    find_device,
    load_catalogue,
    read_device_file,
    search,
)
from edgeport.profiles.devices.schema import GPU_APIS, KINDS, NPU_PRECISIONS


def _pixel() -> dict:
    """Return the shipped Pixel 8 entry as data, to break one field at a time."""
    data = yaml.safe_load((DATA_DIR / "android.yaml").read_text())
    return next(d for d in data["devices"] if d["id"] == "pixel-8")


def _write(folder: Path, entries: list[dict], name: str = "mine.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({"schema_version": 1, "devices": entries}, sort_keys=False))
    return path


def _error(tmp_path: Path, entry: dict) -> str:
    path = _write(tmp_path, [entry])
    with pytest.raises(InputError) as info:
        read_device_file(path)
    message = info.value.one_line()
    assert "\n" not in message and str(path) in message
    return message


def test_shipped_catalogue_loads_with_sources_for_every_accelerator() -> None:
    devices = load_catalogue()
    assert len(devices) >= 15
    assert len({d.vendor for d in devices.values()}) >= 6
    for device in devices.values():
        for fact in ("cpu", "gpu", "npu"):
            if getattr(device, fact) is not None:
                assert device.sources[fact].startswith(("https://", "http://")), (device.id, fact)


def test_every_data_file_is_packaged() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"edgeport.profiles.devices" = ["data/*.yaml"]' in text
    assert len(list(DATA_DIR.glob("*.yaml"))) >= 4


def test_bad_kind_names_file_device_field_and_allowed(tmp_path: Path) -> None:
    message = _error(tmp_path, {**_pixel(), "kind": "watch"})
    assert "device 'pixel-8'" in message and "field 'kind'" in message
    assert all(k in message for k in KINDS)


def test_bad_gpu_api_names_the_list_index(tmp_path: Path) -> None:
    entry = _pixel()
    entry["gpu"] = {**entry["gpu"], "apis": ["vulkan", "glide"]}
    message = _error(tmp_path, entry)
    assert "field 'gpu.apis[1]'" in message and "'glide'" in message
    assert all(api in message for api in GPU_APIS)


def test_bad_npu_precision(tmp_path: Path) -> None:
    entry = _pixel()
    entry["npu"] = {**entry["npu"], "precisions": ["int3"]}
    message = _error(tmp_path, entry)
    assert "field 'npu.precisions[0]'" in message and all(p in message for p in NPU_PRECISIONS)


def test_accelerator_without_source_is_refused(tmp_path: Path) -> None:
    entry = _pixel()
    del entry["sources"]["npu"]
    assert "field 'sources.npu'" in _error(tmp_path, entry)
    entry = _pixel()
    entry["sources"]["gpu"] = "the vendor said so"
    assert "field 'sources.gpu'" in _error(tmp_path, entry)


def test_unknown_field_lists_allowed_fields(tmp_path: Path) -> None:
    message = _error(tmp_path, {**_pixel(), "colour": "obsidian"})
    assert "field 'colour'" in message and "allowed:" in message and "engines" in message


def test_engine_on_missing_accelerator_and_ambiguous_default(tmp_path: Path) -> None:
    entry = _pixel()
    entry["engines"] = {**entry["engines"], "npu": {"tflite": "npu-int8"}}
    entry["npu"] = None
    del entry["sources"]["npu"]
    assert "field 'engines.npu'" in _error(tmp_path, entry)
    entry = _pixel()
    entry["defaults"] = {"onnx": "cpu"}  # tflite runs on cpu and gpu: a default is required
    assert "field 'defaults.tflite'" in _error(tmp_path, entry)


def test_os_versions_must_be_oldest_first(tmp_path: Path) -> None:
    entry = _pixel()
    entry["os"] = {"name": "Android", "versions": ["15", "14"]}
    assert "field 'os.versions'" in _error(tmp_path, entry)


def test_user_folder_extends_and_replaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = {**_pixel(), "id": "my-board", "name": "My Board", "aliases": []}
    fixed = {**_pixel(), "memory_gb": 12}
    _write(tmp_path, [mine, fixed])
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    devices = load_catalogue()
    assert devices["my-board"].name == "My Board"
    assert devices["pixel-8"].memory_gb == 12  # the user's entry replaces the shipped one


def test_user_folder_missing_and_duplicate_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "nope"))
    with pytest.raises(InputError, match="is not a folder"):
        load_catalogue()
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    _write(tmp_path, [{**_pixel(), "id": "twin", "name": "Twin A"}], "a.yaml")
    _write(tmp_path, [{**_pixel(), "id": "twin", "name": "Twin B"}], "b.yaml")
    with pytest.raises(InputError, match="'twin' is also defined in"):
        load_catalogue()


def test_explicit_file_extends(tmp_path: Path) -> None:
    path = _write(tmp_path, [{**_pixel(), "id": "lab-phone", "name": "Lab Phone"}])
    assert "lab-phone" in load_catalogue([path])
    with pytest.raises(InputError, match="device file not found"):
        load_catalogue([tmp_path / "missing.yaml"])


def test_lookup_by_id_name_and_alias_ignores_case_and_spaces() -> None:
    devices = load_catalogue()
    assert find_device("pixel-8", devices).id == "pixel-8"
    assert find_device("  PIXEL 8 ", devices).id == "pixel-8"
    assert find_device("iphone15pro", devices).id == "iphone-15-pro"
    assert find_device("Samsung Galaxy S24 Ultra", devices).id == "galaxy-s24-ultra"
    assert find_device("Pixel 9000", devices) is None
    assert "Pixel 8" in close_matches("pixel 9", devices)


def test_search_matches_every_word() -> None:
    devices = load_catalogue()
    ids = {d.id for d in search("cortex-a76", devices)}
    assert {"raspberry-pi-5", "orange-pi-5"} <= ids
    a17 = search("apple neural engine a17", devices)
    assert "iphone-15-pro" in {d.id for d in a17} and all("A17" in d.soc for d in a17)
    assert "iphone-15" not in {d.id for d in a17}  # A16


def test_readme_example_entry_is_valid_and_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeport.profiles import resolve_profile

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("**Adding a device.**", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "mine.yaml").write_text(block)
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    profile, why = resolve_profile("My Board", "tflite")
    assert profile.name == "my-board-cpu" and "no LiteRT delegate reaches this GPU" in why
