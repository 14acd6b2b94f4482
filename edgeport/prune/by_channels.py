"""The channel path of the prune stage (``--prune channels``): remove whole channel groups of the
PyTorch source module (torch-pruning's DepGraph keeps coupled layers consistent), per group as
far as its measured sensitivity allows, optionally recover by distillation, and export the
smaller module to ONNX, within pruning's part of the accuracy budget."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import CanonicalModel
from edgeport.frontends.normalize import normalize
from edgeport.options.prune_spec import MAX_RATIO, PruneSpec
from edgeport.prune import budget as budget_mod
from edgeport.prune.budget import LayerCurve, allocate
from edgeport.prune.context import PruneContext, first_arrays, progress_step, run_arrays
from edgeport.prune.distill import distill, torch_threads
from edgeport.prune.search import search_cut
from edgeport.prune.sensitivity import measure_curves, output_distortion, probe_ratios
from edgeport.prune.structured import ROUND_TO, example_inputs, find_groups, pruned_copy, require_module

DISTILL_SAMPLES = 4096  # calibration samples held in memory for recovery


def torch_macs(model: Any, example: tuple) -> float:
    """Multiply-accumulates of one forward pass of ``model`` (torch-pruning's counter); 0 when
    the counter fails."""
    import torch_pruning as tp

    try:
        macs, _ = tp.utils.count_ops_and_params(model, list(example))
    except Exception:  # the counter is a convenience: without it every channel weighs the same
        return 0.0
    return float(macs)


def _torch_run(model: Any, names: list[str]) -> Any:
    """``model`` as a ``run(feeds) -> outputs`` callable (torch is imported only on this path)."""
    from edgeport.frontends.torch import make_torch_runner

    return make_torch_runner(model, names)


class _ChannelGroups:
    """The source module's removable channel groups, their ratio ladders and sensitivity curves,
    and how to prune, run and measure a copy of the module at given ratios."""

    def __init__(self, ctx: PruneContext) -> None:
        self.ctx = ctx
        self.source = ctx.canonical.source
        self.module = require_module(self.source)
        self.static = ctx.data.static_batch
        self.chunk = ctx.run_batch  # the batch the model takes (its own when fixed)
        feeds = {k: v[: self.static] for k, v in ctx.sensitivity_inputs.items()}
        self.example = example_inputs(self.source, feeds, self.static)
        self.sens_batches = self.batches(ctx.sensitivity_inputs)
        with progress_step(ctx, "pruning: channel groups (torch-pruning DepGraph)"), torch_threads(ctx.options.threads):
            self.groups = find_groups(self.module, self.example)
        if not self.groups:
            raise InputError(
                "--prune channels found no channel group that can be removed without changing the model's outputs",
                hint="use --prune magnitude:R",
            )
        groups = self.groups
        ladders = {g.name: g.ladder(ROUND_TO, MAX_RATIO["channels"]) for g in groups}
        self.curves = [
            LayerCurve(g.name, g.channels, [(g.channels - k) / g.channels for k in ladders[g.name]]) for g in groups
        ]
        self.by_name = {c.name: c for c in self.curves}
        self.macs_full = torch_macs(self.module, self.example)

    def batches(self, arrays: dict[str, np.ndarray]) -> list[tuple]:
        """``arrays`` as tuples of torch tensors (input order), ``chunk`` samples at a time."""
        import torch

        names, chunk = self.ctx.names, self.chunk
        count = len(arrays[names[0]])
        return [tuple(torch.from_numpy(arrays[n][i : i + chunk]) for n in names) for i in range(0, count, chunk)]

    def snap(self, name: str, ratio: float) -> float:
        """The rung of ``name``'s ladder nearest ``ratio`` (``ratio`` for an unknown name)."""
        return min(self.by_name[name].options, key=lambda o: abs(o - ratio)) if name in self.by_name else ratio

    def removal(self, ratios: dict[str, float]) -> dict[str, int]:
        """Channels to remove per group for ``ratios``."""
        return {g.name: int(round(ratios.get(g.name, 0.0) * g.channels)) for g in self.groups}

    def eval_drop(self, pruned: Any) -> tuple[float, str, dict[str, Any]]:
        """Accuracy drop of ``pruned`` on the eval data against the original (see PruneContext.drop)."""
        ctx = self.ctx
        return ctx.drop(run_arrays(_torch_run(pruned, ctx.names), ctx.eval_inputs, ctx.run_batch))

    def distortion_at(self, name: str, ratio: float) -> float:
        """Output distortion with only group ``name`` cut to ``ratio``; the first probe of a group
        also sets its curve's gain (MACs saved per channel removed)."""
        ctx = self.ctx
        pruned, _ = pruned_copy(self.module, self.removal({name: ratio}), self.example, self.sens_batches)
        curve = self.by_name[name]
        if curve.gain == 1.0 and self.macs_full:  # MACs saved per channel removed, from the first probe
            saved = max(self.macs_full - torch_macs(pruned, self.example), 1.0)
            curve.gain = saved / max(self.removal({name: ratio})[name], 1)
        outputs = run_arrays(_torch_run(pruned, ctx.names), ctx.sensitivity_inputs, self.chunk)
        return output_distortion(ctx.reference_sensitivity, outputs)


def _measure_sensitivity(channels: _ChannelGroups, spec: PruneSpec) -> tuple[set[str], dict[str, float]]:
    """Measure the curves of the groups ``spec`` leaves free; return the fixed groups' names and
    their ratios (snapped to their ladders)."""
    ctx = channels.ctx
    fixed_names = {g.name for g in channels.groups if spec.fixed_ratio(g.name) is not None}
    fixed = {n: channels.snap(n, spec.fixed_ratio(n)) for n in fixed_names}
    free = [c for c in channels.curves if c.name not in fixed_names]
    probe_total = sum(len(probe_ratios(c.options)) for c in free)
    with progress_step(ctx, "pruning: sensitivity per channel group", probe_total) as advance:
        with torch_threads(ctx.options.threads):
            measure_curves(free, channels.distortion_at, advance)
    return fixed_names, fixed


def _search_channels(
    channels: _ChannelGroups, spec: PruneSpec, fixed: dict[str, float]
) -> tuple[list[dict[str, Any]], Any]:
    """Prune (and recover) copies of the module at the target, then smaller ones, until one fits
    the budget. Returns every attempt's record and (pruned module, channel counts, ratios) of
    the one that fits, or None."""
    ctx, curves = channels.ctx, channels.curves
    distill_inputs = first_arrays(ctx.calibration, DISTILL_SAMPLES, channels.static, ctx.data.dynamic)
    recal_batches = channels.batches(distill_inputs)

    def allocate_at(factor: float) -> dict[str, float]:
        target = spec.ratio * factor if spec.ratio is not None else None
        return allocate(curves, target, {k: channels.snap(k, v * factor) for k, v in fixed.items()})

    def attempt(ratios: dict[str, float]) -> tuple[dict[str, Any], Any]:
        with progress_step(ctx, f"pruning: {budget_mod.achieved(curves, ratios):.0%} of channels"):
            with torch_threads(ctx.options.threads):
                pruned, counts = pruned_copy(channels.module, channels.removal(ratios), channels.example, recal_batches)
                one_shot, _, _ = channels.eval_drop(pruned)
        recovery = None
        if ctx.options.finetune_steps:
            with progress_step(ctx, f"pruning: recovery ({ctx.options.finetune_steps} distillation steps)"):
                recovery = distill(
                    pruned,
                    channels.module,
                    distill_inputs,
                    ctx.names,
                    ctx.options.finetune_steps,
                    seed=ctx.options.seed,
                    threads=ctx.options.threads,
                    fixed_batch=None if ctx.data.dynamic else channels.static,
                )
        with torch_threads(ctx.options.threads):
            drop, _, fidelity = channels.eval_drop(pruned)
        record = {
            "channels_removed": budget_mod.achieved(curves, ratios),
            "channels_kept": {name: after for name, (_, after) in counts.items()},
            "one_shot_drop": one_shot,
            "drop": drop,
            "top1": fidelity.get("artifact_top1"),
            "fits_budget": ctx.fits(drop),
            "recovery": recovery,
        }
        return record, (pruned, counts, ratios)

    return search_cut(ctx, spec, allocate_at, attempt)


def _chosen_or_unpruned(
    channels: _ChannelGroups, spec: PruneSpec, attempts: list[dict[str, Any]], chosen: Any
) -> tuple[Any, dict[str, tuple[int, int]], dict[str, float]]:
    """The module to export, its channel counts per group and its ratios: the cut that fit, else
    an unpruned copy, with a decision saying the smallest cut tried was over the budget."""
    if chosen is not None:
        return chosen
    ctx = channels.ctx
    ctx.decisions.append(
        {
            "asked": f"--prune {spec.text} within {ctx.budget:.3g} points",
            "done": "not pruned",
            "why": f"the smallest cut tried ({attempts[-1]['channels_removed']:.0%} of channels) cost "
            f"{attempts[-1]['drop']:.2f} points, over pruning's part of the budget",
        }
    )
    counts = {g.name: (g.channels, g.channels) for g in channels.groups}
    return copy.deepcopy(channels.module).eval(), counts, {}


def prune_by_channels(ctx: PruneContext, spec: PruneSpec) -> tuple[CanonicalModel, dict[str, Any]]:
    """Find the source module's channel groups, measure their sensitivity, search per-group
    ratios for ``spec``'s target that fit pruning's part of the budget, and export the pruned
    module to ONNX (parity-checked). Returns the pruned CanonicalModel and its report details (per
    group, attempts, export parity). Raises InputError when the source is not a PyTorch module
    edgeport can prune or has no removable group."""
    channels = _ChannelGroups(ctx)
    fixed_names, fixed = _measure_sensitivity(channels, spec)
    attempts, chosen = _search_channels(channels, spec, fixed)
    pruned, counts, ratios = _chosen_or_unpruned(channels, spec, attempts, chosen)
    pruned_source = dataclasses.replace(channels.source, run=_torch_run(pruned, ctx.names), live_model=pruned, notes=[])
    with progress_step(ctx, "pruning: export the pruned model to ONNX and check parity"):
        pruned_canonical, _ = normalize(pruned_source, None, ctx.reference_feeds, ctx.source_options)
    group_rows = [
        {
            "layer": g.name,
            "coupled": g.coupled,
            "dependents": g.dependents,
            "channels_before": counts[g.name][0],
            "channels_after": counts[g.name][1],
            "ratio": ratios.get(g.name, 0.0),
            "fixed": g.name in fixed_names,
            "sensitivity": {f"{r:.3f}": v for r, v in channels.by_name[g.name].measured.items()},
        }
        for g in channels.groups
    ]
    details = {"layers": group_rows, "attempts": attempts, "accepted": chosen is not None}
    # The report's model.parity is the original's export; this one proves the pruned export.
    details["export_parity"] = pruned_canonical.parity
    return pruned_canonical, details
