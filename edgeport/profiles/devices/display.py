"""Text views of catalogue devices: one line per device (``devices list``) and every fact with
its source (``devices show``)."""

from __future__ import annotations

from edgeport.profiles.devices.schema import Device


def device_line(device: Device) -> str:
    """Return one line: id, name, kind, year, SoC and where each format runs (* = default)."""
    runs = "; ".join(
        f"{fmt}: " + ", ".join(a + ("*" if device.defaults.get(fmt) == a else "") for a in device.accelerators(fmt))
        for fmt in device.formats()
    )
    return f"{device.id}\t{device.name}\t{device.vendor} {device.kind} {device.year}\t{device.soc}\t{runs}"


def _sourced(device: Device, fact: str, text: str) -> str:
    """``text`` followed by the URL its fact comes from, when the entry gives one."""
    url = device.sources.get(fact)
    return f"{text}  [{url}]" if url else text


def device_lines(device: Device) -> list[str]:
    """Return every fact of ``device`` as ``field: value`` lines, each followed by its source."""
    lines = [f"{device.name} ({device.id})", f"vendor: {device.vendor}; kind: {device.kind}; year: {device.year}"]
    if device.aliases:
        lines.append(f"aliases: {', '.join(device.aliases)}")
    lines.append(_sourced(device, "soc", f"soc: {device.soc}"))
    if device.cpu:
        cpu = device.cpu
        name = f", {cpu.name}" if cpu.name else ""
        lines.append(
            _sourced(device, "cpu", f"cpu: {cpu.arch}, {cpu.cores} cores{name}; features: {', '.join(cpu.features)}")
        )
    if device.gpu:
        gpu = device.gpu
        cc = f"; CUDA compute capability {gpu.cuda_compute_capability}" if gpu.cuda_compute_capability else ""
        lines.append(_sourced(device, "gpu", f"gpu: {gpu.name}; apis: {', '.join(gpu.apis)}{cc}"))
    if device.npu:
        npu = device.npu
        precisions = ", ".join(npu.precisions) or "not published"
        lines.append(_sourced(device, "npu", f"npu: {npu.name}, {npu.generation}; precisions: {precisions}"))
    lines.append(_sourced(device, "memory", f"memory: {device.memory_gb:g} GB"))
    lines.append(_sourced(device, "os", f"os: {device.os.name} {', '.join(device.os.versions)}"))
    for fmt in device.formats():
        engines = ", ".join(
            f"{a} -> {device.engines[a][fmt]}" + (" (default)" if device.defaults.get(fmt) == a else "")
            for a in device.accelerators(fmt)
        )
        lines.append(f"{fmt}: {engines}")
    lines += [f"not reachable ({accel}): {note}" for accel, note in device.notes.items()]
    overrides = {k: v for k, v in vars(device.overrides).items() if v is not None}
    if overrides:
        lines.append("overrides: " + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    lines.append("sources:")
    lines += [f"  {fact}: {url}" for fact, url in device.sources.items()]
    lines.append(f"file: {device.file}")
    return lines
