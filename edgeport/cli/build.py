"""``edgeport build edgeport.yaml`` and ``edgeport merge``: CI builds of models x targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgeport.cli.errors import handle_errors


def _fmt(value: Any, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def print_build(summary: dict[str, Any], out_dir: Path) -> None:
    """Print the targets' figures as a table, then every failed gate, regression or error."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))  # CI logs: no 80-column wrapping of target ids
    table = Table(title=f"edgeport build: {out_dir}")
    for column in ("target", "status", "build", "accuracy", "drop", "p50 ms", "size MB"):
        # fold, not ellipsis: a target id must stay readable in a narrow terminal
        table.add_column(
            column, justify="right" if column in ("drop", "p50 ms", "size MB") else "left", overflow="fold"
        )
    colors = {"passed": "green", "failed": "red", "error": "magenta"}
    for record in summary["targets"]:
        m = record.get("metrics") or {}
        accuracy = (
            _fmt(m.get("artifact_top1"), ".2f", "% top-1")
            if m.get("artifact_top1") is not None
            else _fmt(m.get("top1_agreement"), ".2f", "% agree")
        )
        outcome = record.get("outcome") or ""
        if record.get("seconds") is not None:
            outcome += f" {record['seconds']:.1f} s"
        if record.get("reproducible") is not None:
            outcome += ", reproduced" if record["reproducible"] else ", NOT byte-identical"
        table.add_row(
            record["id"],
            f"[{colors[record['status']]}]{record['status']}[/]",
            outcome,
            accuracy,
            _fmt(m.get("accuracy_drop"), ".3f"),
            _fmt(m.get("latency_p50_ms"), ".4f"),
            _fmt(m.get("size_mb"), ".3f"),
        )
    console.print(table)
    counts = summary["counts"]
    console.print(
        f"{counts['targets']} targets: {counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors; "
        f"{counts['built']} built, {counts['cached']} reused from the cache"
    )
    for line in summary["warnings"]:
        console.print(f"[yellow]not checked:[/] {line}", highlight=False)
    for line in summary["failures"]:
        console.print(f"[red]FAILED[/] {line}", highlight=False)
    console.print(f"summary: {out_dir / 'summary.json'}  index: {out_dir / 'index.html'}", highlight=False)


def verdict(summary: dict[str, Any]) -> None:
    """Raise the error whose exit code says how the build went: GateFailed (3) when gates or
    regressions failed, ConversionError (4) when a target could not be built."""
    from edgeport.core.errors import ConversionError, GateFailed

    if summary["passed"]:
        return
    counts = summary["counts"]
    failed_ids = [r["id"] for r in summary["targets"] if r["status"] != "passed"]
    message = f"{len(failed_ids)} of {counts['targets']} targets failed" + (
        f": {', '.join(failed_ids)}" if failed_ids else ""
    )
    if summary.get("missing"):
        message += f"; {len(summary['missing'])} shard(s) missing"
    if counts["error"] or summary.get("missing"):
        raise ConversionError(message, hint="each target's log is linked from index.html")
    raise GateFailed(message, hint="the failed gates are listed above and in summary.json")


@click.command("build")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--only", multiple=True, help="Build only targets matching NAME (model, target or model/target; wildcards)."
)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Targets built in parallel."
)
@click.option("--shard", default=None, help="I/N: build the I-th of N stable slices of the targets (CI matrix).")
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="A previous summary.json: fail on accuracy/latency/size regressions beyond the config's tolerances.",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache folder [default: $EDGEPORT_CACHE_DIR or ~/.cache/edgeport].",
)
@click.option("--no-cache", "no_cache", is_flag=True, help="Neither reuse nor store cached bundles.")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Rebuild every target, refresh the cache, and report whether the artifacts reproduced.",
)
@click.option(
    "-o",
    "--output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where out/<model>/<target>/, summary.json and index.html go [default: the config's output_dir, else out].",
)
@click.option("--timeout", type=float, default=None, help="Seconds after which one target's build is stopped.")
@click.option(
    "--markdown",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also append the summary as a Markdown table to this file (e.g. $GITHUB_STEP_SUMMARY).",
)
@click.option("--report_url", default=None, help="Link to index.html to put in the Markdown summary.")
@click.option("--quiet", is_flag=True, help="No progress; print only the summary's path.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@handle_errors
def build_command(
    config: Path,
    only: tuple[str, ...],
    jobs: int,
    shard: str | None,
    baseline: Path | None,
    cache: Path | None,
    no_cache: bool,
    rebuild: bool,
    output_dir: Path | None,
    timeout: float | None,
    markdown: Path | None,
    report_url: str | None,
    quiet: bool,
    debug: bool,
) -> None:
    """Build every model x target of CONFIG (edgeport.yaml) into out/<model>/<target>/, reuse
    unchanged targets from the cache, and write summary.json + index.html. Exits 3 listing
    every failed gate or regression, 4 when a target could not be built."""
    from edgeport.ci.runner import BuildOptions, build, parse_shard

    options = BuildOptions(
        only=list(only),
        jobs=jobs,
        shard=parse_shard(shard),
        baseline=baseline,
        cache=cache,
        use_cache=not no_cache,
        rebuild=rebuild,
        output_dir=output_dir,
        timeout=timeout,
    )
    summary = build(config, options, quiet=quiet)
    out_dir = Path(summary["_out_dir"])
    if markdown:
        from edgeport.ci.summary import append_markdown

        append_markdown(summary, markdown, report_url)
    if quiet:
        click.echo(str(out_dir / "summary.json"))
    else:
        print_build(summary, out_dir)
    verdict(summary)


@click.command("merge")
@click.argument("summaries", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o", "--output_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Where to write."
)
@click.option("--baseline", type=click.Path(path_type=Path), default=None, help="Re-check regressions against it.")
@click.option(
    "--markdown",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also append the summary as a Markdown table to this file (e.g. $GITHUB_STEP_SUMMARY).",
)
@click.option("--report_url", default=None, help="Link to index.html to put in the Markdown summary.")
@click.option("--quiet", is_flag=True, help="Print only the merged summary's path.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@handle_errors
def merge_command(
    summaries: tuple[Path, ...],
    output_dir: Path,
    baseline: Path | None,
    markdown: Path | None,
    report_url: str | None,
    quiet: bool,
    debug: bool,
) -> None:
    """Join the summary.json files of CI shards into one summary.json + index.html and one
    verdict (exit 3 or 4 listing every failure, as ``build``; a missing shard is a failure)."""
    from edgeport.ci.summary import merge_summaries

    summary = merge_summaries(list(summaries), output_dir, baseline)
    if markdown:
        from edgeport.ci.summary import append_markdown

        append_markdown(summary, markdown, report_url)
    if quiet:
        click.echo(str(output_dir / "summary.json"))
    else:
        print_build(summary, output_dir.resolve())
    verdict(summary)


COMMANDS = (build_command, merge_command)


def register(group: click.Group) -> None:
    """Add ``build`` and ``merge`` to the ``edgeport`` command group."""
    for command in COMMANDS:
        group.add_command(command)
