"""Human-readable views of profiles (``edgeport profiles show``)."""

from __future__ import annotations

from rich.table import Table

from edgeport.profiles.schema import DeviceProfile


def profile_table(profile: DeviceProfile) -> Table:
    """Return a rich Table describing ``profile`` for the terminal."""
    table = Table(title=f"{profile.name}: {profile.description}", show_header=False)
    table.add_row("schemes", ", ".join(profile.schemes))
    table.add_row("ONNX Runtime providers", ", ".join(profile.onnxruntime.execution_providers))
    for label, scheme in (("int8 (static)", profile.int8), ("int8-dynamic", profile.int8_dynamic)):
        table.add_row(
            label,
            f"activations {scheme.activation_type}, weights {scheme.weight_type}, "
            f"{'per-channel' if scheme.per_channel else 'per-tensor'}"
            f"{', reduce_range' if scheme.reduce_range else ''}",
        )
    for note in profile.notes:
        table.add_row("note", note)
    table.add_row("source", profile.source)
    return table
