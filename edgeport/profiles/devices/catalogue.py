"""The device catalogue: the shipped device files plus the user's own, looked up by id or name.

Shipped entries live in ``edgeport/profiles/devices/data/*.yaml`` (one file per vendor group;
every ``*.yaml`` there is read, whoever wrote it). A user extends the catalogue with files of
the same schema: every ``*.yaml`` in the folder named by ``EDGEPORT_DEVICES_DIR`` and any file
passed explicitly (``edgeport devices --devices FILE``). A user's entry with a shipped id
replaces the shipped one, so a user can correct a fact without editing the package; two entries
with one id in the same origin (shipped or user) are an error.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterable
from pathlib import Path

import yaml

from edgeport.core.errors import InputError, describe_exception
from edgeport.profiles.devices.schema import Device, parse_device_file

DATA_DIR = Path(__file__).resolve().parent / "data"
ENV_DIR = "EDGEPORT_DEVICES_DIR"
# libyaml's loader when PyYAML was built with it: the catalogue is read on every device lookup.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_device_file(path: Path) -> list[Device]:
    """Read and validate one device YAML file; return its devices.

    Raises InputError when the file cannot be read, is not YAML, or breaks the schema.
    """
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except OSError as exc:
        raise InputError(f"cannot read device file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"device file {path} is not UTF-8 text: {exc.reason}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"device file {path} is not valid YAML: {describe_exception(exc, with_type=False)}") from exc
    return parse_device_file(data, path)


def user_files(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Return the user's device files: every *.yaml in $EDGEPORT_DEVICES_DIR, then ``extra``.

    Raises InputError when the folder or a file does not exist (a typo must not go unnoticed).
    """
    files: list[Path] = []
    folder = os.environ.get(ENV_DIR, "").strip()
    if folder:
        if not Path(folder).is_dir():
            raise InputError(f"{ENV_DIR}={folder} is not a folder", hint="point it at a folder of device *.yaml files")
        files += sorted(Path(folder).glob("*.yaml")) + sorted(Path(folder).glob("*.yml"))
    for item in extra:
        if not Path(item).is_file():
            raise InputError(f"device file not found: {item}")
        files.append(Path(item))
    return files


def _add(devices: dict[str, Device], found: list[Device], origin: dict[str, str], kind: str) -> None:
    """Add ``found`` to ``devices``; refuse an id or name given twice by the same kind of origin."""
    for device in found:
        before = devices.get(device.id)
        if before is not None and origin[device.id] == kind:
            raise InputError(f"device file {device.file}: device {device.id!r} is also defined in {before.file}")
        devices[device.id] = device
        origin[device.id] = kind
    names: dict[str, Device] = {}
    for device in devices.values():
        for key in (device.name, *device.aliases):
            other = names.setdefault(normalize(key), device)
            if other.id != device.id:
                raise InputError(
                    f"device file {device.file}: device {device.id!r}: name {key!r} is also "
                    f"device {other.id!r}'s ({other.file})"
                )


def load_catalogue(extra: Iterable[str | Path] = ()) -> dict[str, Device]:
    """Return every device, by id: the shipped files, then the user's (which may replace an id).

    Raises InputError for an invalid file, a missing user file or folder, or a duplicate id.
    """
    shipped = sorted(DATA_DIR.glob("*.yaml"))
    users = user_files(extra)
    return dict(_load(files_stamp(shipped + users), len(shipped)))


def files_stamp(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """Return (path, mtime_ns, size) per file: the key of a read-once cache, so a file edited
    since it was read is read again."""
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


@functools.lru_cache(maxsize=8)
def _load(stamp: tuple[tuple[str, int, int], ...], shipped: int) -> dict[str, Device]:
    """The catalogue of the files in ``stamp`` (the first ``shipped`` are the package's)."""
    devices: dict[str, Device] = {}
    origin: dict[str, str] = {}
    for i, (path, _, _) in enumerate(stamp):
        _add(devices, read_device_file(Path(path)), origin, "shipped" if i < shipped else "user")
    return devices


def normalize(name: str) -> str:
    """Return the lookup key of a device name: lower case, without spaces, dashes or underscores."""
    return "".join(ch for ch in name.lower() if ch.isalnum() or ch in "+.")


def find_device(name: str, devices: dict[str, Device]) -> Device | None:
    """Return the device whose id, display name or alias is ``name`` (case and spaces ignored)."""
    key = normalize(name)
    for device in devices.values():
        if key in (normalize(device.id), normalize(device.name), *(normalize(a) for a in device.aliases)):
            return device
    return None


def close_matches(name: str, devices: dict[str, Device], n: int = 5) -> list[str]:
    """Return up to ``n`` device display names close to ``name`` (difflib on the lookup keys)."""
    keys = {normalize(d.name): d.name for d in devices.values()}
    keys.update({normalize(d.id): d.name for d in devices.values()})
    found = difflib.get_close_matches(normalize(name), list(keys), n=n * 2, cutoff=0.6)
    # A partial name ("pixel") matches by substring too; difflib alone misses short queries.
    found += [k for k in keys if normalize(name) and normalize(name) in k]
    return list(dict.fromkeys(keys[k] for k in found))[:n]


def search(text: str, devices: dict[str, Device]) -> list[Device]:
    """Return the devices whose id, name, vendor, SoC, CPU, GPU or NPU mentions every word of ``text``."""
    words = text.lower().split()
    found = []
    for device in devices.values():
        parts = [device.id, device.name, device.vendor, device.kind, device.soc, *device.aliases]
        parts += [device.cpu.name if device.cpu else "", device.gpu.name if device.gpu else ""]
        parts += [f"{device.npu.name} {device.npu.generation}" if device.npu else ""]
        haystack = " ".join(parts).lower()
        if all(word in haystack for word in words):
            found.append(device)
    return found
