"""The command line: a thin layer over the Python API (``edgeport convert``, ``profiles``, ``report``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from edgeport.cli.build import register as register_build
from edgeport.cli.cache import cache_group
from edgeport.cli.devices import devices_group
from edgeport.cli.errors import handle_errors
from edgeport.cli.verify import verify_command
from edgeport.core.errors import GateFailed
from edgeport.options.recipe import QUANTIZATIONS, Recipe, default_of


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeport", prog_name="edgeport")
def main() -> None:
    """edgeport: convert a trained model into a verified, device-tuned artifact."""


_RECIPE_FIELDS = {item.name for item in fields(Recipe)}

# Recipe fields with no CLI flag, and why: set them from the Python API (edgeport.convert) or a
# build config (edgeport.yaml); tests/options/test_defaults.py checks that this list is complete.
API_ONLY_OPTIONS = {
    "warmup_runs": "timing detail: untimed runs before latency is measured (benchmarks and tests tune it)",
    "parity_rtol": "export parity tolerance: loosened in code for models known to export with small drift",
    "parity_atol": "export parity tolerance: loosened in code for models known to export with small drift",
    "opset": "the ONNX opset edgeport exports at; a fixed choice, changed only by code that knows why",
    "seed": "sampling seed of calibration/eval subsets and made-up inputs; fixed so runs repeat",
    "io_dtype": "TFLite input/output dtype: set per target in edgeport.yaml or from the API",
    "thread_sweep": "the thread counts swept: filled from a comma list in --threads (--threads 1,2)",
}


class IntListType(click.ParamType):
    """A positive integer or a comma list of them (``2`` -> 2, ``1,2`` -> [1, 2]); a Recipe
    default (an int or None) passes through unchanged, so the default stays Recipe's."""

    name = "N[,N...]"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        """Return an int for one value, a list of ints for several; fail with click's message."""
        if value is None or isinstance(value, int | list):
            return value
        from edgeport.core.errors import InputError
        from edgeport.options.recipe import parse_int_list

        try:
            numbers = parse_int_list(str(value), param.name if param else "value")
        except InputError as exc:
            self.fail(str(exc), param, ctx)
        return numbers[0] if len(numbers) == 1 and "," not in str(value) else numbers


def _flag(name: str, *decls: str, **kwargs: Any) -> Callable:
    """Return the click option of Recipe field (or CLI-only flag) ``name``.

    A Recipe field's default is read from Recipe (:func:`default_of`), never written here;
    ``decls`` replaces the flag spelling ``--name``. Repeated (``multiple``) flags keep click's
    empty default: the Recipe holds their parsed form, empty too.
    """
    if name in _RECIPE_FIELDS and not kwargs.get("multiple") and not kwargs.get("required"):
        kwargs["default"] = default_of(name)
    return click.option(*(decls or (f"--{name}",)), name, **kwargs)


# The flags of convert, by the stage they configure (options.groups), in --help order.
_RUN_FLAGS = [
    _flag(
        "input_model",
        required=True,
        help="Model file (.pt2, .pt/.pth TorchScript or state_dict, .onnx, .keras, .h5), a TensorFlow SavedModel "
        "folder, a Hugging Face model folder (config.json + weights), or package.module:factory.",
    ),
    _flag("output_format", show_default=True, help="onnx, tflite or coreml (.mlpackage; Apple profiles)."),
    _flag("quantization", show_default=True, type=click.Choice(list(QUANTIZATIONS), case_sensitive=False)),
    _flag(
        "optimize_for",
        show_default=True,
        help="Device profile name, alias, auto/cpu (detect the host), a catalogue device "
        '("Pixel 8", pixel-8:gpu; edgeport devices list) or a .yaml path.',
    ),
    _flag("output_dir", help="Bundle folder [default: out/<model>-<format>-<quantization>-<profile>]."),
    _flag(
        "max_memory",
        help="Memory budget (4GB, 512MB): a model or input that would need more is refused before it is "
        "loaded [default: 80% of the available RAM].",
    ),
]
_SOURCE_FLAGS = [
    _flag("input_shape", multiple=True, help="1,3,224,224 or name:1,3,224,224 (repeat for several inputs)."),
    _flag("input_dtype", multiple=True, help="float32 (all inputs) or name:int64."),
    _flag("dynamic_batch", is_flag=True, help="Make the batch dimension dynamic (models whose file has no shapes)."),
    _flag("model_class", help="package.module:Class (or file.py:Class) for a state_dict."),
    _flag(
        "custom_ops",
        multiple=True,
        help="Op module or file.py that registers custom ops (edgeport.ops.register_op); repeat or comma list. "
        "Loading it runs its code (trusted files only).",
    ),
    _flag(
        "custom_op_library",
        multiple=True,
        help="Compiled custom-op library (.so) that ONNX Runtime registers for the model's custom-domain nodes.",
    ),
    _flag(
        "task",
        help="Hugging Face folders: export task (feature-extraction, text-classification, ...) "
        "[default: from config.json; sentence-transformers folders export embeddings].",
    ),
    _flag(
        "sequence_length",
        type=int,
        help="Hugging Face text models: fix the token length of the inputs [default: dynamic; 128 when the "
        "profile or format needs static shapes].",
    ),
    _flag(
        "allow_pickle",
        "--allow-pickle",
        "--allow_pickle",
        is_flag=True,
        help="Allow unpickling a whole nn.Module (runs code from the file: trusted files only).",
    ),
]
_DATA_FLAGS = [
    _flag(
        "calibration_data",
        help=".npz/.npy (array 'x'), a folder of images, or a .txt file of sentences (one a line, Hugging Face).",
    ),
    _flag(
        "eval_data",
        help=".npz/.npy ('x' and optional labels 'y'), a folder of images (class subfolders = labels), "
        "or a .txt file of sentences.",
    ),
    _flag("preprocess", help="scale=1/255;mean=...;std=...;resize=H,W;layout=NCHW"),
    _flag("calibration_samples", type=int, show_default=True),
    _flag("eval_samples", type=int, help="Use at most this many eval samples [default: all]."),
]
_QUANTIZE_FLAGS = [
    _flag("precision_plan", help="Re-apply a saved precision_plan.json (no search)."),
    _flag("search_budget", help="Cap --quantization auto: N evaluations, Ns seconds, or both (N,Ns)."),
    _flag(
        "max_size",
        help="Artifact size budget (10MB, 500KB, 1.5GB or bytes; decimal units, MiB for binary; external data "
        "counted): auto keeps only plans that fit; a scheme over it fails the gate (exit 3) [default: the "
        "profile's, e.g. 10MB for browser-wasm/webgpu (then only a warning); else none].",
    ),
]
_PRUNE_FLAGS = [
    _flag(
        "prune",
        help="Prune before quantizing: magnitude:R (zero the smallest weights, any source; buys compressed "
        "size, not speed) or channels:R (remove whole channels, PyTorch nn.Module sources; smaller and faster). "
        "R is the fraction removed, spread over layers by sensitivity within --max_accuracy_drop; add "
        "LAYER=R items for per-layer targets (magnitude:0.5,classifier=0).",
    ),
    _flag(
        "finetune_steps",
        type=int,
        show_default=True,
        help="Recover a channel-pruned model by distilling the original on the calibration inputs "
        "(no labels) for N steps; 0 = one-shot.",
    ),
]
_VERIFY_FLAGS = [
    _flag(
        "max_accuracy_drop",
        type=float,
        help="Gate, in points of each output's measure (top-1 %, 100 x (1 - cosine), ...; see README); "
        "exceeded -> exit 3.",
    ),
    _flag(
        "metric",
        show_default=True,
        help="What the gate measures: auto (chosen per output by evidence), top1, cosine, iou, rel_error, "
        "token_top1, binary, exact, none; output=measure items; or your evaluator as module:function "
        "/ file.py:function.",
    ),
    _flag(
        "threads",
        type=IntListType(),
        show_default=True,
        help="Runtime threads for evaluation and latency; a comma list (1,2) is swept with the batch sizes.",
    ),
    _flag("latency_runs", type=int, show_default=True),
]
_TUNE_FLAGS = [
    _flag(
        "objective",
        show_default=True,
        type=click.Choice(["latency", "throughput"]),
        help="latency: batch 1 as measured today; throughput: sweep --batch_sizes x --threads side by side "
        "and recommend the point with the most inferences/s within --max_latency_ms.",
    ),
    _flag(
        "batch_sizes",
        type=IntListType(),
        help="Batch sizes to sweep, e.g. 1,2,4,8,16,32 [default with --objective throughput: 1,2,4,8,16,32].",
    ),
    _flag(
        "max_latency_ms",
        type=float,
        help="Latency target per call (the artifact's p99) for the recommended batch and threads.",
    ),
    _flag(
        "buckets",
        help="Shape buckets: axis=sizes, e.g. seq=16,32,64,128 (the axis is a dynamic dim name of the inputs, or "
        "its prefix): one static artifact per size from one precision plan; edgeport.runtime routes each input "
        "to the smallest that fits (ONNX only for now).",
    ),
    _flag(
        "cascade",
        help="Cascade routing: fp32 = the artifact is the small model and the run's fp32 baseline the large one; "
        "the small one answers when its max softmax probability reaches a threshold picked on the calibration "
        "data (lowest mean latency within the accuracy budget), the large one the rest (ONNX only for now).",
    ),
    _flag(
        "cascade_threshold",
        type=float,
        help="Force the routing threshold: a confidence (0-1), or with --route size an input size (longer inputs go "
        "to the small model).",
    ),
    _flag(
        "route",
        type=click.Choice(["confidence", "size"], case_sensitive=False),
        help="The routing rule of --cascade: confidence (the small model answers when confident enough) or size "
        "(inputs above the threshold, the mask's sum for text or the elements per sample, go to the small model, "
        "the rest to the large one).",
    ),
]
_FORMAT_FLAGS = [
    _flag(
        "coreml_image_input",
        is_flag=True,
        help="Core ML: give image-like inputs (4-D, 1 or 3 channels) as Core ML images (8-bit GRAYSCALE/RGB "
        "pixels) that apply the --preprocess scale/mean/std (one std for all channels).",
    ),
]
_DISPLAY_FLAGS = [
    _flag("quiet", is_flag=True, help="No progress display."),
    _flag(
        "debug",
        is_flag=True,
        help="Show tracebacks, and let TensorFlow, onnx2tf, coremltools and ONNX Runtime write to the terminal "
        "(by default their messages go to the bundle's logs/runtime.log).",
    ),
]
CONVERT_FLAGS = [
    *_RUN_FLAGS,
    *_SOURCE_FLAGS,
    *_DATA_FLAGS,
    *_QUANTIZE_FLAGS,
    *_PRUNE_FLAGS,
    *_VERIFY_FLAGS,
    *_TUNE_FLAGS,
    *_FORMAT_FLAGS,
    *_DISPLAY_FLAGS,
]


def convert_options(func: Callable) -> Callable:
    """Return ``func`` with the flags of ``convert`` (shared by ``edgeport convert`` and ``convert.py``)."""
    for option in reversed(CONVERT_FLAGS):
        func = option(func)
    return func


def print_summary(result, console) -> None:
    """Print the bundle's key figures as a table (from its report)."""
    from rich.table import Table

    r = result.report
    fid, lat, size = r["fidelity"], r["latency"], r["size"]
    table = Table(
        title=f"{r['model']['name']} -> {r['target']['format']} {r['target']['scheme']} on {r['target']['profile']}"
    )
    table.add_column("")
    table.add_column("fp32", justify="right")
    table.add_column("artifact", justify="right")
    table.add_column("change", justify="right")
    if "artifact_top1" in fid:
        table.add_row(
            "top-1 accuracy",
            f"{fid['reference_top1']:.2f}%",
            f"{fid['artifact_top1']:.2f}%",
            f"{fid['artifact_top1'] - fid['reference_top1']:+.2f} pts",
        )
    if "top1_agreement" in fid:
        table.add_row("top-1 agreement", "", f"{fid['top1_agreement']:.2f}%", "")
    first = next(iter(fid["outputs"].values()))
    table.add_row("cosine (mean / min)", "", f"{first['cosine_mean']:.5f} / {first['cosine_min']:.5f}", "")
    if fid.get("emulated"):
        table.add_row("accuracy", "", "[yellow]emulated[/]", "")
    if lat.get("not_run"):  # e.g. Core ML off macOS: no numbers that would not be the device's
        table.add_row("latency", "", "not run", "")
    else:
        table.add_row(
            "latency p50",
            f"{lat['reference']['p50_ms']:.4f} ms",
            f"{lat['artifact']['p50_ms']:.4f} ms",
            f"{lat['speedup']:.2f}x faster",
        )
        table.add_row("latency p99", f"{lat['reference']['p99_ms']:.4f} ms", f"{lat['artifact']['p99_ms']:.4f} ms", "")
    table.add_row(
        "file size",
        f"{size['reference_bytes'] / 1e6:.3f} MB",
        f"{size['artifact_bytes'] / 1e6:.3f} MB",
        f"{size['ratio']:.2f}x smaller",
    )
    console.print(table)
    detected = next((n for n in r.get("notes", []) if n.startswith("input detected as")), None)
    if detected:
        console.print(detected)
    data = r["data"]["eval"]
    console.print(f"eval data: {data['source']}" + ("  [yellow](random inputs)[/]" if data["synthetic"] else ""))
    if lat.get("not_run"):
        console.print(f"latency: {lat['measured']}")
    else:
        console.print(
            f"latency: {lat['threads']} thread(s), batch {lat['batch']}, {lat['reference']['runs']} interleaved runs "
            f"against {lat.get('reference_model', 'the fp32 model')}; {lat['measured']}"
        )
    for decision in r["decisions"]:
        # What auto chose, and metric choices resting on weak evidence (the user may need to settle them).
        # A catalogue device's choice of engine too (profiles/devices/resolve.py: "device Pixel 8 ...").
        device = decision["asked"].startswith("--optimize_for") and decision["why"].startswith("device ")
        if decision["asked"].startswith("--quantization") or device or "weak evidence" in decision["why"]:
            console.print(f"[yellow]decision:[/] {decision['asked']} -> {decision['done']}: {decision['why']}")
    if r.get("pruning"):
        console.print(f"[yellow]pruning:[/] {r['pruning']['what_it_buys']}")
    chosen = (r.get("tuning") or {}).get("chosen") or {}
    if chosen.get("batch"):
        console.print(
            f"tuning: batch {chosen['batch']}, {chosen['threads']} thread(s): {chosen['throughput_per_s']:.0f} "
            f"inferences/s, p99 {chosen['p99_ms']:.4g} ms per call ({chosen['why']})"
        )
    if r.get("buckets"):
        console.print(bucket_line(r["buckets"]))
    if r.get("cascade"):
        console.print(cascade_line(r["cascade"]))
    for flag in (r.get("op_check") or {}).get("flagged", [])[:8]:
        console.print(f"[yellow]op check:[/] {flag['count']} x {flag['op']}: {flag['why']}")
    gate = r["gate"]
    measured = f"accuracy: {gate['metric']} = {gate['drop']:.3f} pts"
    if gate["max_accuracy_drop"] is None:
        # Nothing to pass or fail: saying "passed" here read as if a limit had been checked.
        console.print(f"{measured} (not gated: no --max_accuracy_drop)")
    else:
        verdict = "[green]passed[/]" if gate["passed"] else "[red]FAILED[/]"
        console.print(f"{measured} (limit {gate['max_accuracy_drop']}) {verdict}")
    console.print(f"bundle: {result.bundle_dir}")


def bucket_line(buckets: dict[str, Any]) -> str:
    """Return the summary's line on the shape buckets: per size its eval samples and gate drop."""
    parts = []
    for b in buckets["buckets"]:
        verdict = "" if "drop" not in b else f", {b['drop']:.3f} pts" + ("" if b["within_budget"] else " [red]over[/]")
        parts.append(f"{b['size']} ({b['samples']} samples{verdict})")
    too_long = (
        f"; {buckets['longer_than_largest']} longer than the largest, not run" if buckets["longer_than_largest"] else ""
    )
    return f"buckets ({buckets['axis']}, {buckets['rule']}): " + ", ".join(parts) + too_long


def cascade_line(cascade: dict[str, Any]) -> str:
    """Return the summary's line on the routed pair (either rule): the rule and threshold, the
    share the small model answers, mean latency against the large model alone and the accuracy
    drop, on the eval data."""
    e = cascade["eval"]
    ms = e["mean_latency_ms"]
    over = "" if e["within_budget"] else " [red]over[/]"
    if cascade.get("rule") == "size":
        size = f"{cascade['input']} {cascade['measure']} > {cascade['threshold']:.6g}"
        rule = f"route by size: {size} -> {cascade['small']}"
    else:
        rule = f"cascade ({cascade['small']} -> {cascade['large']}, max softmax >= {cascade['threshold']:.4g})"
    return (
        f"{rule}: "
        f"small answers {100 * e['small_answers']:.1f}%, mean {ms['cascade']:.4g} ms vs {ms['large']:.4g} ms "
        f"large alone ({ms['large'] / ms['cascade']:.2f}x), drop {e['drop_vs_large']:.2f} pts "
        f"(budget {cascade['budget']:g}){over}"
    )


def run_convert(
    quiet: bool, debug: bool, input_shape: tuple[str, ...], input_dtype: tuple[str, ...], **options: Any
) -> None:
    """Run one conversion from CLI options and print the summary; exits 3 when a gate failed."""
    from rich.console import Console

    from edgeport.api import convert
    from edgeport.core import quiet as quiet_output
    from edgeport.core.progress import Progress, RichProgress

    progress = Progress() if quiet else RichProgress()
    if isinstance(progress, RichProgress):  # progress stays on the terminal while fd 2 is captured
        progress.console = Console(file=quiet_output.terminal())
    try:
        result = convert(input_shape=list(input_shape), input_dtype=list(input_dtype), progress=progress, **options)
    except GateFailed as exc:
        from edgeport.pipeline.run import Result
        from edgeport.reports.json import read_report

        if exc.bundle_dir and not quiet:
            bundle = Path(exc.bundle_dir)
            print_summary(Result(bundle, read_report(bundle / "report.json"), False), Console())
        raise
    if not quiet:
        print_summary(result, Console())
    else:
        click.echo(str(result.bundle_dir))


@main.command("convert")
@convert_options
@handle_errors(capture=True)
def convert_command(**options: Any) -> None:
    """Convert, quantize and verify a model; write the bundle (model, reports, manifest)."""
    run_convert(**options)


main.add_command(verify_command)
register_build(main)  # build, merge: edgeport/cli/build.py
main.add_command(cache_group)  # cache info|clear: edgeport/cli/cache.py
main.add_command(devices_group)  # devices list|show|search: edgeport/cli/devices.py


@main.group()
def profiles() -> None:
    """Device profiles: list, show, detect."""


@profiles.command("list")
@handle_errors
def profiles_list() -> None:
    """List the shipped profiles and their aliases."""
    from edgeport.profiles import shipped_profiles

    for profile in shipped_profiles().values():
        aliases = f" (alias: {', '.join(profile.aliases)})" if profile.aliases else ""
        click.echo(f"{profile.name}{aliases}: {profile.description}")


@profiles.command("show")
@click.argument("name")
@handle_errors
def profiles_show(name: str) -> None:
    """Show one profile as a table."""
    from rich.console import Console

    from edgeport.profiles import resolve_profile
    from edgeport.profiles.display import profile_table

    profile, why = resolve_profile(name)
    Console().print(profile_table(profile))
    click.echo(why)


@profiles.command("detect")
@handle_errors
def profiles_detect() -> None:
    """Print the profile that ``--optimize_for cpu`` picks on this host and why, the host's CPU
    features, and the catalogue device this host is (or none)."""
    from edgeport.profiles.detect import detect_host_profile
    from edgeport.profiles.devices.catalogue import load_catalogue
    from edgeport.profiles.devices.host import (
        catalogue_features,
        closest_device,
        describe_match,
        host_strings,
        read_hwcaps,
    )
    from edgeport.profiles.hardware import host_arch
    from edgeport.runtime.host import cpu_flags

    name, reason = detect_host_profile()
    click.echo(f"{name}: {reason}")
    features = catalogue_features(cpu_flags() or read_hwcaps())
    click.echo(f"cpu: {host_arch()}; features: {', '.join(features) or 'none read'}")
    strings = host_strings()
    device, matched = closest_device(strings, host_arch(), load_catalogue())
    click.echo(describe_match(device, matched, features, strings))


@main.command("report")
@click.argument("report_json", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False),
    default=None,
    help="HTML file to write [default: next to the JSON].",
)
@handle_errors
def report_command(report_json: str, output: str | None) -> None:
    """Render a report.json into a self-contained HTML page."""
    from edgeport.reports.html import write_html
    from edgeport.reports.json import read_report

    report = read_report(Path(report_json))
    target = Path(output) if output else Path(report_json).with_suffix(".html")
    write_html(report, target)
    click.echo(str(target))


def convert_main() -> None:
    """Entry point of ``convert.py``: the ``convert`` command's flags, without the subcommand."""
    command = click.command(context_settings={"help_option_names": ["-h", "--help"]})(
        convert_options(handle_errors(lambda **options: run_convert(**options), capture=True))
    )
    command.help = "Convert, quantize and verify a model (same flags as `edgeport convert`)."
    command(prog_name="convert.py")


if __name__ == "__main__":
    main()
