"""A small Fashion-MNIST classifier that uses the two custom ops of ``ops.py``, and the two ONNX
models with custom-domain nodes made from it.

``GatedMLP``: flatten -> Linear(784, 256) -> mylib::fused_gated_gelu(first half, second half)
-> Linear(128, 64) -> mylib::rms_norm -> Linear(64, 10). Input ``[N, 1, 28, 28]`` in [0, 1].
It is trained in a few seconds by distillation from the bundled FashionCNN on the 256 bundled
calibration images (shifted), so no data beyond ``examples/`` is needed; its accuracy is then
measured on the bundled 1,000 labelled test images.

Run ``python examples/custom_ops/model.py OUT`` to write ``gated_mlp.pt2``,
``gated_mlp_gelu_node.onnx`` (node mylib::FusedGatedGelu, decomposable) and
``gated_mlp_rmsnorm_node.onnx`` (node mylib::RmsNormNoWeight, Python kernel).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
OPS_FILE = Path(__file__).resolve().parent / "ops.py"


def load_ops() -> None:
    """Register the example ops (once per process) through edgeport's loader."""
    from edgeport.ops import load_custom_ops

    load_custom_ops(str(OPS_FILE))


class GatedMLP(nn.Module):
    """The classifier; ``gated_op``/``norm_op`` pick the custom op or the same math in plain torch."""

    def __init__(self, gated_op: bool = True, norm_op: bool = True) -> None:
        super().__init__()
        self.gated_op, self.norm_op = gated_op, norm_op
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(128, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for ``[N, 1, 28, 28]`` images in [0, 1]."""
        h = self.fc1(torch.flatten(x, 1) - 0.286)
        a, g = h[:, :128], h[:, 128:]
        if self.gated_op:
            h = torch.ops.mylib.fused_gated_gelu(a, g)
        else:
            h = nn.functional.gelu(a, approximate="tanh") * torch.sigmoid(g)
        h = self.fc2(h)
        h = torch.ops.mylib.rms_norm(h) if self.norm_op else h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.head(h)


def _teacher() -> nn.Module:
    sys.path.insert(0, str(ROOT))
    from examples.fashion_cnn import FashionCNN

    teacher = FashionCNN()
    teacher.load_state_dict(torch.load(EXAMPLES / "fashion_cnn_state_dict.pt", weights_only=True))
    return teacher.eval()


def train_gated_mlp(steps: int = 400, seed: int = 0) -> GatedMLP:
    """Train GatedMLP (plain-torch path, which autograd differentiates) to match FashionCNN's
    soft labels on the 256 calibration images shifted by up to one pixel; return it with the custom ops on."""
    load_ops()
    torch.manual_seed(seed)
    images = np.load(EXAMPLES / "fashion_mnist_calib.npz")["x"].astype(np.float32) / 255.0
    base = torch.from_numpy(images)[:, None]
    # The teacher runs once, on every image and its four one-pixel shifts (its forward pass
    # is what costs: the student is a small MLP).
    shifted = torch.cat([torch.roll(base, (dy, dx), (2, 3)) for dy, dx in SHIFTS])
    with torch.no_grad():
        targets = torch.softmax(_teacher()(shifted) / 2.0, -1)
    student = GatedMLP(gated_op=False, norm_op=False)
    optimizer = torch.optim.Adam(student.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(0, shifted.shape[0], (64,), generator=generator)
        log_p = torch.log_softmax(student(shifted[index]) / 2.0, -1)
        loss = nn.functional.kl_div(log_p, targets[index], reduction="batchmean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    student.gated_op = student.norm_op = True
    return student.eval()


def accuracy(model: nn.Module) -> float:
    """Top-1 accuracy (%) of ``model`` on the 1,000 bundled labelled test images."""
    data = np.load(EXAMPLES / "fashion_mnist_test_1k.npz")
    x = torch.from_numpy(data["x"].astype(np.float32) / 255.0)[:, None]
    with torch.no_grad():
        predicted = model(x).argmax(-1).numpy()
    return float((predicted == data["y"]).mean() * 100)


def write_models(model: GatedMLP, folder: Path) -> dict[str, Path]:
    """Write the .pt2 (both ops as torch custom ops) and the two ONNX models, each with one op kept
    as a custom-domain node and the other in standard ops; return their paths by name."""
    from edgeport.ops.onnx import custom_node_translation

    folder.mkdir(parents=True, exist_ok=True)
    example = (torch.rand(2, 1, 28, 28),)
    batch = torch.export.Dim("batch")
    paths = {"pt2": folder / "gated_mlp.pt2"}
    torch.export.save(torch.export.export(model, example, dynamic_shapes=({0: batch},)), paths["pt2"])
    variants = {
        "gelu_node": (True, False, torch.ops.mylib.fused_gated_gelu.default, ("FusedGatedGelu", 2)),
        "rmsnorm_node": (False, True, torch.ops.mylib.rms_norm.default, ("RmsNormNoWeight", 1)),
    }
    for name, (gated, norm, op, (op_type, inputs)) in variants.items():
        variant = GatedMLP(gated, norm)
        variant.load_state_dict(model.state_dict())
        table = {op: custom_node_translation("mylib", op_type, inputs)}
        program = torch.onnx.export(
            variant.eval(),
            example,
            dynamo=True,
            custom_translation_table=table,
            opset_version=18,
            dynamic_shapes=({0: batch},),
            report=False,
            verbose=False,
        )
        paths[name] = folder / f"gated_mlp_{name}.onnx"
        program.save(str(paths[name]))
    return paths


if __name__ == "__main__":
    trained = train_gated_mlp()
    print(f"GatedMLP top-1 on the 1,000 test images: {accuracy(trained):.1f}%")
    for key, path in write_models(trained, Path(sys.argv[1] if len(sys.argv) > 1 else "out/custom_ops")).items():
        print(key, path)
