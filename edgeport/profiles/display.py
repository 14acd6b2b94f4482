"""Human-readable views of profiles (``edgeport profiles show``)."""

from __future__ import annotations

from rich.table import Table

from edgeport.core.sizes import format_size
from edgeport.profiles.schema import FORMATS, PRECISIONS, DeviceProfile, Int8Scheme


def _int8_text(scheme: Int8Scheme) -> str:
    """Return an Int8Scheme as one readable line (names the reduce_range setting explicitly)."""
    return (
        f"activations {scheme.activation_type}"
        f" ({'symmetric' if scheme.activation_symmetric else 'asymmetric'}), "
        f"weights {scheme.weight_type} ({'symmetric' if scheme.weight_symmetric else 'asymmetric'}, "
        f"{'per-channel' if scheme.per_channel else 'per-tensor'}), "
        f"reduce_range {'yes' if scheme.reduce_range else 'no'}"
    )


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def profile_table(profile: DeviceProfile) -> Table:
    """Return a rich Table describing ``profile``: formats, schemes, op costs, constraints."""
    table = Table(title=f"{profile.name}: {profile.description}", show_header=False, show_lines=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    if profile.aliases:
        table.add_row("aliases", ", ".join(profile.aliases))
    table.add_row("schemes", ", ".join(profile.schemes))
    for name in FORMATS:
        fmt = profile.formats.get(name)
        if fmt is None:
            reason = profile.unsupported_formats.get(name, "not described by this profile")
            table.add_row(f"{name}", f"not run: {reason}")
            continue
        table.add_row(
            f"{name}",
            f"{fmt.summary()}\nschemes: {', '.join(fmt.schemes)}; float compute: "
            f"{'/'.join(fmt.float_compute) or 'none (integer only)'}",
        )
        for scheme, why in fmt.why_not.items():
            table.add_row(f"  {name}: no {scheme}", why)
    table.add_row("int8 (static)", _int8_text(profile.int8))
    table.add_row("int8-dynamic", _int8_text(profile.int8_dynamic))
    table.add_row(
        "int4-weight",
        f"block size {profile.int4_weight.block_size}, "
        f"{'symmetric' if profile.int4_weight.symmetric else 'asymmetric'}",
    )
    table.add_row("int16 activations", _yes_no(profile.int16_activations))
    c = profile.constraints
    constraints = (
        f"static shapes only: {_yes_no(c.static_shapes_only)}; full integer only: {_yes_no(c.full_integer_only)}; "
        f"memory budget: {f'{c.memory_budget_mb} MB' if c.memory_budget_mb else 'none'}; "
        f"default size budget: {format_size(c.max_size_bytes) if c.max_size_bytes else 'none'}"
    )
    table.add_row("constraints", constraints)
    if c.fallback_ops:
        table.add_row("falls back to CPU", ", ".join(c.fallback_ops))
    # Relative costs, one row per op class; a missing precision is not native.
    for op_class, costs in profile.op_classes.items():
        cells = [f"{p} {costs[p]:.2f}" for p in PRECISIONS if p in costs]
        table.add_row(f"cost {op_class}", ", ".join(cells))
    for note in profile.notes:
        table.add_row("note", note)
    table.add_row("source", profile.source)
    return table
