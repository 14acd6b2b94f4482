"""Core ML image inputs (``--coreml_image_input``): which model inputs become 8-bit image types,
and the scale and bias that reproduce ``--preprocess`` on their pixels."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec
from edgeport.data.preprocess import Preprocess

# The 8-bit pixel scaling the data path applies to uint8 samples when --preprocess has no scale.
DEFAULT_PIXEL_SCALE = 1.0 / 255.0


@dataclass
class ImageInput:
    """A model input given to Core ML as an 8-bit image: ``input = scale * pixel + bias[channel]``."""

    name: str
    color_layout: str  # "GRAYSCALE" or "RGB" (coremltools' ColorLayout names)
    scale: float
    bias: list[float]
    channel_first: bool  # NCHW (PyTorch) or NHWC (TensorFlow)
    preprocess: str  # the --preprocess spec it was derived from

    def to_coreml(self, ct, shape: list[int]):
        """The coremltools ImageType for this input."""
        return ct.ImageType(
            name=self.name,
            shape=shape,
            scale=self.scale,
            bias=self.bias if self.color_layout == "RGB" else self.bias[0],
            color_layout=getattr(ct.colorlayout, self.color_layout),
            channel_first=self.channel_first,
        )

    def facts(self) -> dict[str, Any]:
        """JSON-ready description for the manifest, the report and the runners."""
        return asdict(self)


def image_inputs(specs: list[TensorSpec], preprocess: Preprocess, batch: int) -> dict[str, ImageInput]:
    """The inputs that become Core ML image types under ``--coreml_image_input``, by name.

    An input qualifies when it is a float 4-D tensor with 1 (GRAYSCALE) or 3 (RGB) channels in
    its layout (``--preprocess layout=``, the source's, else NCHW when dim 1 is 1 or 3). The
    data path turns pixels into model inputs as ``(pixel * scale - mean) / std`` (scale default
    1/255 for 8-bit pixels); a Core ML image type applies one scale and a per-channel bias, so
    ``scale / std`` and ``-mean / std`` express it exactly when std is the same for every
    channel. Raises InputError when no input qualifies, the batch is not 1 (an image type holds
    one image), or the per-channel stds differ (no exact image-type equivalent).
    """
    found: dict[str, ImageInput] = {}
    rejected: list[str] = []
    described = preprocess.describe()
    if preprocess.scale is None:
        rest = "" if described == "(none)" else f";{described}"
        described = f"scale=1/255 (the default for 8-bit pixels){rest}"
    for spec in specs:
        shape = spec.shape
        layout = preprocess.layout or spec.layout
        if layout is None and len(shape) == 4:
            layout = "NCHW" if shape[1] in (1, 3) else "NHWC" if shape[3] in (1, 3) else None
        channels = (shape[1] if layout == "NCHW" else shape[3]) if len(shape) == 4 and layout else None
        if not spec.dtype.startswith("float") or channels not in (1, 3):
            rejected.append(f"{spec.name} {spec.dtype} {shape}")
            continue
        if batch != 1:
            raise InputError(
                f"--coreml_image_input: input {spec.name!r} has a fixed batch of {batch}; a Core ML image input "
                "holds one image",
                hint="export the model with batch 1 or a dynamic batch (--dynamic_batch)",
            )
        for key, values in (("mean", preprocess.mean), ("std", preprocess.std)):
            if len(values) not in (0, 1, channels):
                raise InputError(f"--preprocess {key} has {len(values)} values; input {spec.name!r} has {channels}")
        if len(set(preprocess.std)) > 1:
            raise InputError(
                f"--coreml_image_input: --preprocess std={','.join(f'{v:g}' for v in preprocess.std)} differs per "
                "channel, and a Core ML image input applies one scale to every channel (y = scale * pixel + bias)",
                hint="drop --coreml_image_input (the input stays a float tensor, preprocessed by the caller), "
                "or fold the per-channel std into the model's first layer and pass one std",
            )
        std = preprocess.std[0] if preprocess.std else 1.0
        mean = list(preprocess.mean or [0.0]) * (channels if len(preprocess.mean) <= 1 else 1)
        scale = preprocess.scale if preprocess.scale is not None else DEFAULT_PIXEL_SCALE
        found[spec.name] = ImageInput(
            spec.name,
            "GRAYSCALE" if channels == 1 else "RGB",
            scale / std,
            [0.0 - m / std for m in mean],  # 0.0 - ...: no "-0.0" in the report
            layout == "NCHW",
            described,
        )
    if not found:
        raise InputError(
            "--coreml_image_input: no input is an image (a float 4-D tensor with 1 or 3 channels): "
            + "; ".join(rejected),
            hint="drop --coreml_image_input, or state the layout with --preprocess layout=NCHW|NHWC",
        )
    return found
