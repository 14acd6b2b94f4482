"""``edgeport verify BUNDLE``: re-verify a bundle here or on a device over SSH."""

from __future__ import annotations

from pathlib import Path

import click

from edgeport.cli.errors import handle_errors


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@click.command("verify")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--runner",
    default="local",
    show_default=True,
    help="local; browser (headless Chromium with onnxruntime-web: browser-wasm or browser-webgpu); or "
    "ssh://user@host[:port][/path/to/python] (extra ssh options: EDGEPORT_SSH_OPTIONS).",
)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="Runtime threads.")
@click.option("--runs", default=100, show_default=True, type=click.IntRange(min=1), help="Timed runs per model.")
@click.option(
    "--metrics-out",
    "metrics_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the latency histograms, load times and peak memory in the Prometheus text format "
    "(FILE.prom; labels model, target, variant).",
)
@click.option("--custom_ops", multiple=True, help="Op module or file.py the bundle's custom ops need (edgeport.ops).")
@click.option("--custom_op_library", multiple=True, help="Compiled custom-op library (.so) for its custom nodes.")
@click.option("--debug", is_flag=True, help="Tracebacks on errors, and the runtimes' own messages on the terminal.")
@handle_errors(capture=True)
def verify_command(
    bundle: Path,
    runner: str,
    threads: int,
    runs: int,
    metrics_out: Path | None,
    custom_ops: tuple[str, ...],
    custom_op_library: tuple[str, ...],
    debug: bool,
) -> None:
    """Check a bundle's files against its manifest, run it (here or on a device), and write a new
    report.verify-<where>-<time>.json/.html beside the original report."""
    from edgeport.ops import split_specs
    from edgeport.pipeline.custom_ops import custom_ops_session, require_custom_ops
    from edgeport.verify.bundle_check import verify_bundle

    specs, libraries = split_specs(custom_ops), split_specs(custom_op_library)
    require_custom_ops(bundle, bool(specs or libraries))
    with custom_ops_session(specs, libraries):
        section = verify_bundle(bundle, runner=runner, threads=threads, runs=runs)
    device = section.get("device") or {}
    runtime = section.get("runtime") or {}
    click.echo(
        f"verified on {device.get('hostname') or section['runner']}: {device.get('os')}, {device.get('cpu')}; "
        f"{runtime.get('runtime')} {runtime.get('version')}; {section['files_checked']} files match the manifest"
    )
    rows = [("", "original", "now")] + [
        (row["figure"], _fmt(row["before"]), _fmt(row["after"])) for row in section["table"]
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    click.echo(f"report: {section['report_json']} and {section['report_html']}")
    if metrics_out is not None:
        from edgeport.verify.prometheus import export_verification_metrics

        export_verification_metrics(bundle, section, runner, threads, metrics_out)
        click.echo(f"metrics: {metrics_out}")
