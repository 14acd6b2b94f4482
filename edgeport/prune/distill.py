"""Recovery after structured pruning: distil the original model into the pruned one on the
calibration inputs. The original's outputs are the targets, so no labels are needed."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from edgeport.prune.structured import recalibrate_batchnorm

BATCH = 64
LEARNING_RATE = 1e-3
SHIFT_PIXELS = 2


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` intra-op threads, then restore the previous setting."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _loss(student_outputs: list, teacher_outputs: list):
    """KL divergence for class scores [N, C]; otherwise MSE scaled by the teacher's variance,
    so that every output weighs about the same whatever its units."""
    import torch
    import torch.nn.functional as F

    total = 0.0
    for out, target in zip(student_outputs, teacher_outputs, strict=False):
        if not torch.is_floating_point(target):
            continue
        if out.ndim == 2 and out.shape[1] > 1:
            total = total + F.kl_div(F.log_softmax(out, 1), F.softmax(target, 1), reduction="batchmean")
        else:
            total = total + F.mse_loss(out, target) / (target.var().detach() + 1e-8)
    return total


def _augment(args: list, generator) -> list:
    """Shift image-like inputs ([N, C, H, W], H and W >= 8) by up to 2 pixels. The teacher sees
    the same shifted input, so its targets stay consistent: this only widens the few
    calibration samples (256 measured on Fashion-MNIST: 89.8% -> 91.5% top-1 after recovery)."""
    import torch

    shifted = []
    for arg in args:
        if torch.is_floating_point(arg) and arg.ndim == 4 and min(arg.shape[-2:]) >= 8:
            dy, dx = torch.randint(-SHIFT_PIXELS, SHIFT_PIXELS + 1, (2,), generator=generator).tolist()
            arg = torch.roll(arg, (dy, dx), (2, 3))
        shifted.append(arg)
    return shifted


def distill(
    student: Any,
    teacher: Any,
    inputs: dict[str, np.ndarray],
    input_names: list[str],
    steps: int,
    *,
    batch: int = BATCH,
    learning_rate: float = LEARNING_RATE,
    seed: int = 0,
    threads: int = 1,
    fixed_batch: int | None = None,
) -> dict[str, Any]:
    """Train ``student`` (in place) for ``steps`` steps to reproduce ``teacher``'s outputs on
    random mini-batches of ``inputs`` (Adam, one-cycle learning rate); batch norms are then
    re-estimated on the plain inputs. ``fixed_batch``: the model only takes that batch size.

    Returns facts for the report: steps, samples, first/last loss, seconds.
    """
    import torch

    started = time.perf_counter()
    tensors = [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in input_names]
    count = len(tensors[0])
    size = fixed_batch or min(batch, count)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    teacher.eval()
    with torch_threads(threads):
        optimizer = torch.optim.Adam(student.parameters(), lr=learning_rate)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=steps, pct_start=0.1)
        student.train()
        for _ in range(steps):
            index = torch.randint(0, count, (size,), generator=generator)
            args = _augment([t[index] for t in tensors], generator)
            with torch.no_grad():
                targets = [t.detach() for t in _flatten_outputs_torch(teacher(*args))]
            loss = _loss(_flatten_outputs_torch(student(*args)), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        student.eval()
        step = fixed_batch or BATCH
        stop = count - count % step if fixed_batch else count
        batches = [tuple(t[i : i + step] for t in tensors) for i in range(0, stop, step)]
        recalibrate_batchnorm(student, batches)
    head, tail = losses[: max(1, steps // 10)], losses[-max(1, steps // 10) :]
    return {
        "steps": steps,
        "samples": count,
        "batch": size,
        "learning_rate": learning_rate,
        "loss_first": float(np.mean(head)) if losses else None,
        "loss_last": float(np.mean(tail)) if losses else None,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _flatten_outputs_torch(value: Any) -> list:
    """Tensors of a model's output (tensor, tuple/list, dict, Hugging Face ModelOutput), in order."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flatten_outputs_torch(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flatten_outputs_torch(v)]
    if hasattr(value, "to_tuple"):
        return _flatten_outputs_torch(value.to_tuple())
    return []
