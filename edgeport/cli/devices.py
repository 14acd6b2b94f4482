"""``edgeport devices list|show|search``: the device catalogue (edgeport/profiles/devices/)."""

from __future__ import annotations

from pathlib import Path

import click

from edgeport.cli.errors import handle_errors

DEVICES_OPTION = click.option(
    "--devices",
    "device_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A device YAML file that extends the catalogue (repeatable; also: every *.yaml in $EDGEPORT_DEVICES_DIR).",
)


@click.group("devices")
def devices_group() -> None:
    """The device catalogue: list, show, search. `--optimize_for "Pixel 8"` picks a device's engine."""


def _catalogue(device_files: tuple[Path, ...]) -> dict:
    from edgeport.profiles.devices.catalogue import load_catalogue

    return load_catalogue(device_files)


@devices_group.command("list")
@click.option("--vendor", default=None, help="Only this vendor (case-insensitive), e.g. apple.")
@click.option("--has", "has", type=click.Choice(["cpu", "gpu", "npu"]), default=None, help="Only devices with one.")
@click.option(
    "--kind", default=None, help="Only this kind: phone, tablet, laptop, desktop, sbc, gpu, accelerator, mac."
)
@DEVICES_OPTION
@handle_errors
def devices_list(vendor: str | None, has: str | None, kind: str | None, device_files: tuple[Path, ...]) -> None:
    """List devices, one per line (id, name, vendor kind year, SoC, formats per accelerator; * default)."""
    from edgeport.profiles.devices.display import device_line

    lines = [
        device_line(device)
        for device in _catalogue(device_files).values()
        if (not vendor or device.vendor.lower() == vendor.lower())
        and (not kind or device.kind == kind.lower())
        and (not has or getattr(device, has) is not None)
    ]
    # One write: `edgeport devices list | head` then closes the pipe after the output, not during it.
    if lines:
        click.echo("\n".join(lines))


@devices_group.command("show")
@click.argument("name")
@DEVICES_OPTION
@handle_errors
def devices_show(name: str, device_files: tuple[Path, ...]) -> None:
    """Show every fact of one device (id or name) and the source of each."""
    from edgeport.core.errors import InputError
    from edgeport.profiles.devices.catalogue import close_matches, find_device
    from edgeport.profiles.devices.display import device_lines

    devices = _catalogue(device_files)
    device = find_device(name, devices)
    if device is None:
        close = close_matches(name, devices)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "edgeport devices list"
        raise InputError(f"unknown device {name!r}", hint=hint)
    click.echo("\n".join(device_lines(device)))


@devices_group.command("search")
@click.argument("text")
@DEVICES_OPTION
@handle_errors
def devices_search(text: str, device_files: tuple[Path, ...]) -> None:
    """List the devices whose id, name, vendor, SoC, CPU, GPU or NPU mention every word of TEXT."""
    from edgeport.profiles.devices.catalogue import search
    from edgeport.profiles.devices.display import device_line

    found = search(text, _catalogue(device_files))
    if found:
        click.echo("\n".join(device_line(device) for device in found))
    else:
        click.echo(f"no device matches {text!r}", err=True)
