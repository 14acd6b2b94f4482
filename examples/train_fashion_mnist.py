"""Train the bundled example model and write the files that ship in ``examples/``.

Data: Fashion-MNIST from Debian's package (no download here)::

    sudo apt-get install dataset-fashion-mnist     # files in /usr/share/datasets/fashion-mnist

Run (about 5 minutes on 2 CPU cores)::

    .venv/bin/python examples/train_fashion_mnist.py

Writes:
    examples/fashion_cnn.pt2            torch.export ExportedProgram, dynamic batch
    examples/fashion_mnist_test_1k.npz  1,000 labelled test images (x: uint8 [N,28,28], y: int64)
    examples/fashion_mnist_calib.npz    256 training images for calibration (x: uint8 [N,28,28])
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from examples.fashion_cnn import FashionCNN  # noqa: E402

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
OUT_DIR = Path(__file__).resolve().parent
SEED = 0


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST container format) into a numpy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main() -> None:
    """Train for two epochs, report test accuracy and write the example files."""
    if not DATA_DIR.is_dir():
        sys.exit(f"{DATA_DIR} not found: install Debian's dataset-fashion-mnist package")
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    x_train = read_idx(DATA_DIR / "train-images-idx3-ubyte.gz")
    y_train = read_idx(DATA_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    x_test = read_idx(DATA_DIR / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(DATA_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)

    def to_tensor(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)

    model = FashionCNN()
    epochs, batch_size = 2, 128
    steps = epochs * (len(x_train) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x_train))
        for step in range(len(x_train) // batch_size):
            idx = order[step * batch_size : (step + 1) * batch_size]
            logits = model(to_tensor(x_train[idx]))
            loss = loss_fn(logits, torch.from_numpy(y_train[idx]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step % 100 == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.3f}", flush=True)

    model.eval()
    with torch.no_grad():
        predictions = np.concatenate(
            [model(to_tensor(x_test[i : i + 500])).argmax(1).numpy() for i in range(0, len(x_test), 500)]
        )
    print(f"test accuracy (10k): {(predictions == y_test).mean():.4f}")

    # A fixed, class-balanced 1k test subset so that the demo's figures are reproducible.
    subset = np.concatenate([np.flatnonzero(y_test == c)[:100] for c in range(10)])
    subset.sort()
    print(f"test accuracy (1k subset): {(predictions[subset] == y_test[subset]).mean():.4f}")
    np.savez_compressed(OUT_DIR / "fashion_mnist_test_1k.npz", x=x_test[subset], y=y_test[subset])
    calib = rng.choice(len(x_train), 256, replace=False)
    np.savez_compressed(OUT_DIR / "fashion_mnist_calib.npz", x=x_train[calib])

    example = to_tensor(x_test[:2])
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(exported, OUT_DIR / "fashion_cnn.pt2")
    torch.save(model.state_dict(), OUT_DIR / "fashion_cnn_state_dict.pt")
    print("wrote", ", ".join(p.name for p in sorted(OUT_DIR.glob("fashion_*"))))


if __name__ == "__main__":
    main()
