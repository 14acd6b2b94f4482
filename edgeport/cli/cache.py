"""``edgeport cache info|clear``: what the shared cache folder holds (per kind, and its size
limit), and removing its entries."""

from __future__ import annotations

import os
from pathlib import Path

import click

from edgeport.cli.errors import handle_errors
from edgeport.core.cache_store import KINDS

CACHE_OPTION = click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache folder [default: $EDGEPORT_CACHE_DIR or ~/.cache/edgeport].",
)
DEBUG_OPTION = click.option("--debug", is_flag=True, help="Show tracebacks.")


@click.group("cache")
def cache_group() -> None:
    """The cache shared by runs (edgeport build, --quantization auto): info, clear."""


@cache_group.command("info")
@CACHE_OPTION
@DEBUG_OPTION
@handle_errors
def info_command(cache: Path | None, debug: bool) -> None:
    """Print the cache folder, its entries and size per kind, and its size limit."""
    from edgeport.core.cache import cache_root
    from edgeport.core.cache_store import cache_limit, usage
    from edgeport.core.limits import format_bytes

    root = cache_root(cache)
    limit = cache_limit()
    setting = os.environ.get("EDGEPORT_CACHE_MAX", "").strip()
    where = f"EDGEPORT_CACHE_MAX={setting}" if setting else "the default; set EDGEPORT_CACHE_MAX to change it"
    click.echo(f"cache folder: {root}{'' if root.is_dir() else ' (not created yet)'}")
    counts = usage(root)
    width = max(len(kind) for kind in KINDS)
    for kind, figures in counts.items():
        partial = f", {figures['partial']} being written or left by a killed run" if figures["partial"] else ""
        click.echo(
            f"  {kind.ljust(width)}  {figures['entries']:>5} entries  {format_bytes(figures['bytes']):>10}"
            f"  ({KINDS[kind]}){partial}"
        )
    total = sum(f["bytes"] for f in counts.values())
    click.echo(f"total: {format_bytes(total)}; limit {format_bytes(limit)} ({where})")


@cache_group.command("clear")
@CACHE_OPTION
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(list(KINDS)),
    help="Clear only this kind (repeatable) [default: every kind].",
)
@DEBUG_OPTION
@handle_errors
def clear_command(cache: Path | None, kinds: tuple[str, ...], debug: bool) -> None:
    """Remove the cache's entries (an entry another run is reading is left, and counted)."""
    from edgeport.core.cache import cache_root
    from edgeport.core.cache_store import clear
    from edgeport.core.errors import InputError
    from edgeport.core.limits import format_bytes

    root = cache_root(cache)
    try:
        removed, freed, busy = clear(root, kinds or None)
    except TimeoutError:
        raise InputError(f"the cache {root} is busy (another edgeport is evicting or clearing it)") from None
    what = ", ".join(kinds) if kinds else "every kind"
    click.echo(f"removed {removed} entries ({format_bytes(freed)}) from {root} ({what})")
    if busy:
        click.echo(f"{busy} entries in use by another run were left", err=True)
