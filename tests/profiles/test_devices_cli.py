"""`edgeport devices list|show|search` and `profiles detect` on arm64 (cpuinfo and hwcaps parsed
from sample text and numbers: this host is x86-64)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from edgeport.cli.main import main
from edgeport.profiles.devices.catalogue import DATA_DIR, ENV_DIR, load_catalogue
from edgeport.profiles.devices.host import catalogue_features, closest_device, decode_hwcaps, describe_match
from edgeport.runtime.host import parse_cpuinfo

# /proc/cpuinfo of a Raspberry Pi 5 (Cortex-A76; the first core and the board lines).
PI5_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1

Revision\t: d04170
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""
# A Cortex-A72 (Raspberry Pi 4): no dot product, no fp16 arithmetic.
PI4_FEATURES = "Features\t: fp asimd evtstrm crc32 cpuid\n"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_list_prints_one_device_per_line_without_header() -> None:
    code, out = _run("devices", "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(load_catalogue())
    assert all(line.split("\t")[0] in load_catalogue() for line in lines)


def test_list_filters() -> None:
    _, apple = _run("devices", "list", "--vendor", "APPLE")
    assert {line.split("\t")[0] for line in apple.splitlines()} == {
        d.id for d in load_catalogue().values() if d.vendor == "Apple"
    }
    _, npu_phones = _run("devices", "list", "--has", "npu", "--kind", "phone")
    ids = {line.split("\t")[0] for line in npu_phones.splitlines()}
    assert "galaxy-s24-ultra" in ids and "raspberry-pi-5" not in ids
    assert all(load_catalogue()[i].npu is not None and load_catalogue()[i].kind == "phone" for i in ids)


def test_show_prints_facts_and_sources() -> None:
    code, out = _run("devices", "show", "raspberry pi 5")
    assert code == 0 and "Cortex-A76" in out and "dotprod" in out
    assert "sources:" in out and "https://developer.arm.com/Processors/Cortex-A76" in out
    code, out = _run("devices", "show", "Raspbery Pi 5")
    assert code == 2 and "did you mean 'Raspberry Pi 5'" in out and len(out.strip().splitlines()) == 1


def test_search_and_user_file(tmp_path: Path) -> None:
    code, out = _run("devices", "search", "hexagon v75")
    assert code == 0 and out.split("\t")[0] == "galaxy-s24-ultra"
    pixel = next(d for d in yaml.safe_load((DATA_DIR / "android.yaml").read_text())["devices"] if d["id"] == "pixel-8")
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "devices": [{**pixel, "id": "lab-7", "name": "Lab 7"}]}))
    _, out = _run("devices", "list", "--devices", str(path))
    assert len(out.splitlines()) == len(load_catalogue()) + 1 and "lab-7\tLab 7" in out


def test_env_dir_extends_list(tmp_path: Path, monkeypatch) -> None:
    pixel = next(d for d in yaml.safe_load((DATA_DIR / "android.yaml").read_text())["devices"] if d["id"] == "pixel-8")
    (tmp_path / "mine.yaml").write_text(
        yaml.safe_dump({"schema_version": 1, "devices": [{**pixel, "id": "my-phone", "name": "My Phone"}]})
    )
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    _, out = _run("devices", "list")
    assert "my-phone\tMy Phone" in out


def test_arm64_cpuinfo_features() -> None:
    assert catalogue_features(parse_cpuinfo(PI5_CPUINFO)) == ("dotprod", "fp16", "neon")
    assert catalogue_features(parse_cpuinfo(PI4_FEATURES)) == ("neon",)


def test_arm64_hwcaps() -> None:
    # AT_HWCAP bits 1 (asimd), 10 (asimdhp), 20 (asimddp); AT_HWCAP2 bits 1 (sve2), 13 (i8mm), 14 (bf16).
    hwcap = 1 << 0 | 1 << 1 | 1 << 9 | 1 << 10 | 1 << 20
    flags = decode_hwcaps(hwcap, 1 << 1 | 1 << 13 | 1 << 14)
    assert flags == {"fp", "asimd", "fphp", "asimdhp", "asimddp", "sve2", "i8mm", "bf16"}
    assert catalogue_features(flags) == ("bf16", "dotprod", "fp16", "i8mm", "neon", "sve2")
    assert decode_hwcaps(0b11, 0) == {"fp", "asimd"}


def test_closest_device_by_board_or_cpu_model() -> None:
    devices = load_catalogue()
    device, matched = closest_device(["Cortex-A76", "Raspberry Pi 5 Model B Rev 1.0"], "arm64", devices)
    assert device.id == "raspberry-pi-5" and matched == "Raspberry Pi 5"
    device, _ = closest_device(["NVIDIA Jetson Orin Nano Developer Kit"], "arm64", devices)
    assert device.id == "jetson-orin-nano"
    device, _ = closest_device(["Intel(R) Core(TM) Ultra 7 155H"], "x86-64", devices)
    assert device.id == "core-ultra-7-155h"
    # Same name, other architecture: no match; an unknown CPU: none, said so.
    assert closest_device(["Raspberry Pi 5"], "x86-64", devices) == (None, "")
    assert closest_device(["AMD EPYC"], "x86-64", devices) == (None, "")
    assert "none of the catalogue's devices" in describe_match(None, "", (), ["AMD EPYC"])
    pi4 = devices["raspberry-pi-4"]
    line = describe_match(pi4, "Raspberry Pi 4", ("neon",), ["Raspberry Pi 4 Model B"])
    assert line.startswith("device: Raspberry Pi 4 Model B (raspberry-pi-4")


def test_detect_names_features_and_device_line() -> None:
    code, out = _run("profiles", "detect")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[1].startswith("cpu: ") and lines[2].startswith("device: ")
