"""Structured channel pruning of a live PyTorch module with torch-pruning's DepGraph.

Removing output channel ``i`` of a conv also removes what depends on it: the batch-norm
entries, input channel ``i`` of every consumer, the matching channel of the other branch of a
residual add (the two are pruned together), the slice of a concat, and the channel of a
depthwise conv in between. torch-pruning computes these dependency groups by tracing one
forward pass; edgeport chooses how many channels each group loses and which (smallest L2
norm over the whole group), and refuses sources that hold no nn.Module to prune.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeport.core.errors import ConversionError, InputError, describe_exception
from edgeport.core.model import SourceModel

# Channels are removed in multiples of this: ORT's CPU convolutions work on blocks of 8 (AVX2)
# or 16 (AVX-512) channels, so a count between multiples pays for the padding anyway.
ROUND_TO = 8
SUPPORTED_FORMS = ("state_dict", "factory", "pickle")


@dataclass
class ChannelGroup:
    """One set of coupled output channels, named by its root layer (the first conv/linear)."""

    name: str
    channels: int
    coupled: list[str] = field(default_factory=list)  # other layers losing the same output channels
    dependents: list[str] = field(default_factory=list)  # layers losing input channels / BN entries

    def ladder(self, round_to: int = ROUND_TO, max_ratio: float = 0.9) -> list[int]:
        """Channel counts this group may be cut to, descending from its full width: multiples of
        ``round_to`` (or single channels for narrow layers), never below ``1 - max_ratio`` of it."""
        step = round_to if self.channels >= 2 * round_to else 1
        floor = max(1, int(np.ceil(self.channels * (1.0 - max_ratio))))
        kept = [self.channels]
        k = (self.channels - 1) // step * step if step > 1 else self.channels - 1
        while k >= floor and k >= 1:
            kept.append(k)
            k -= step
        return kept


def require_module(source: SourceModel):
    """Return the live nn.Module of a PyTorch source that supports structured pruning.

    Raises InputError for every other source, saying which forms work and what to pass instead.
    """
    import torch

    hint = (
        "channel pruning edits an nn.Module: save a state_dict and pass --model_class "
        "(e.g. examples/fashion_cnn_state_dict.pt --model_class examples/fashion_cnn.py:FashionCNN), "
        "or a module:factory; --prune magnitude:R works on any source"
    )
    if source.framework != "pytorch":
        raise InputError(f"--prune channels needs a PyTorch model; this one is {source.framework}", hint=hint)
    if source.form not in SUPPORTED_FORMS or not isinstance(source.live_model, torch.nn.Module):
        why = {
            "exported_program": "a .pt2 ExportedProgram holds a flattened graph of aten ops, not the layers",
            "torchscript": "a TorchScript module cannot be restructured",
            "huggingface": "transformer heads need per-model pruning rules this version does not have",
        }.get(source.form, f"the {source.form} form is not supported")
        raise InputError(f"--prune channels cannot prune this PyTorch model: {why}", hint=hint)
    return source.live_model


def example_inputs(source: SourceModel, feeds: dict[str, np.ndarray], batch: int = 1) -> tuple:
    """Torch tensors for one forward pass (the first ``batch`` samples of ``feeds``, in the
    source's input order)."""
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name][:batch])) for s in source.inputs)


def _forward_shapes(model, example: tuple) -> list[tuple[int, ...]]:
    import torch

    from edgeport.frontends.torch import _flatten_outputs

    with torch.no_grad():
        return [tuple(a.shape) for a in _flatten_outputs(model(*example))]


def _dependency_graph(model, example: tuple):
    import torch_pruning as tp

    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=list(example))
    except Exception as exc:  # torch-pruning traces with autograd; any failure is "cannot prune"
        raise ConversionError(
            f"torch-pruning could not trace the model's channel dependencies: {describe_exception(exc)}",
            hint="use --prune magnitude:R (unstructured, on the ONNX weights) instead",
        ) from exc


def _group_of(dg, module):
    pruner = dg.get_pruner_of_module(module)
    channels = pruner.get_out_channels(module)
    return pruner, channels, dg.get_pruning_group(module, pruner.prune_out_channels, list(range(channels)))


def find_groups(model, example: tuple) -> list[ChannelGroup]:
    """Return the model's prunable channel groups, leaving out any group whose pruning would
    change the shape of a model output (the classifier's classes, a returned feature map)."""
    import torch

    names = {m: n for n, m in model.named_modules()}
    order = list(names.values())
    dg = _dependency_graph(model, example)
    groups: list[ChannelGroup] = []
    roots = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)
    for group in dg.get_all_groups(root_module_types=roots):
        root = group[0].dep.target.module
        if root not in names:
            continue
        coupled, dependents = [], []
        for dep, _ in group:
            target = names.get(dep.target.module)
            if target is None or target == names[root]:
                continue
            bucket = coupled if dg.is_out_channel_pruning_fn(dep.handler) else dependents
            if target not in bucket:
                bucket.append(target)
        channels = dg.get_pruner_of_module(root).get_out_channels(root)
        if channels and channels > 1:
            # Name the group by its first conv/linear in the model's own order (``stem`` rather
            # than whichever member the tracer met first, e.g. ``project``).
            members = [names[root], *coupled]
            layers = [n for n in order if n in members and isinstance(model.get_submodule(n), roots)]
            name = layers[0] if layers else names[root]
            others = [n for n in members if n != name]
            groups.append(ChannelGroup(name, int(channels), others, dependents))
    shapes = _forward_shapes(model, example)
    kept = []
    for group in groups:
        # Try it: prune one channel of a copy and see whether any output changes shape.
        trial = copy.deepcopy(model)
        trial_dg = _dependency_graph(trial, example)
        module = trial.get_submodule(group.name)
        pruner = trial_dg.get_pruner_of_module(module)
        one = trial_dg.get_pruning_group(module, pruner.prune_out_channels, [0])
        if not trial_dg.check_pruning_group(one):
            continue
        one.prune()
        try:
            same = _forward_shapes(trial, example) == shapes
        except Exception:  # a layer torch-pruning did not adjust: not safely prunable
            same = False
        if same:
            kept.append(group)
    return sorted(kept, key=lambda g: order.index(g.name))


def prune_channels(model, remove: dict[str, int], example: tuple) -> dict[str, tuple[int, int]]:
    """Remove ``remove[group]`` output channels from each named group of ``model``, in place,
    lowest L2 norm over the whole group first. Returns ``{group: (channels before, after)}``."""
    import torch
    import torch_pruning as tp

    importance = tp.importance.GroupMagnitudeImportance(p=2)
    dg = _dependency_graph(model, example)
    result: dict[str, tuple[int, int]] = {}
    for name, count in remove.items():
        module = model.get_submodule(name)
        pruner, channels, group = _group_of(dg, module)
        if count <= 0:
            result[name] = (channels, channels)
            continue
        scores = importance(group)
        if scores is None:  # no weights to rank by in this group: cut the last channels
            order = list(range(channels - count, channels))
        else:
            order = torch.argsort(scores)[:count].tolist()
        group = dg.get_pruning_group(module, pruner.prune_out_channels, sorted(order))
        if not dg.check_pruning_group(group):
            raise ConversionError(f"pruning {count} of {channels} channels of {name} would empty a layer")
        group.prune()
        result[name] = (channels, pruner.get_out_channels(module))
    return result


def recalibrate_batchnorm(model, batches: Sequence[tuple]) -> int:
    """Re-estimate every batch norm's running mean/variance on ``batches`` (no labels, no
    gradients). Pruning a layer's inputs shifts its outputs' statistics; stale statistics are
    what makes a one-shot pruned CNN collapse (measured on Fashion-MNIST: 27% -> 88% top-1).
    Returns the number of batch norms updated."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or not batches:
        return 0
    was_training = model.training
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
        norm.train()
    with torch.no_grad():
        for args in batches:
            model(*args)
    for norm in norms:
        norm.momentum = 0.1
    model.train(was_training)
    if not was_training:
        model.eval()
    return len(norms)


def pruned_copy(model, remove: dict[str, int], example: tuple, batches: Sequence[tuple]) -> tuple[Any, dict]:
    """Return a pruned deep copy of ``model`` (batch norms recalibrated on ``batches``) and the
    per-group channel counts (see :func:`prune_channels`)."""
    clone = copy.deepcopy(model).eval()
    counts = prune_channels(clone, remove, example)
    recalibrate_batchnorm(clone, batches)
    return clone.eval(), counts
