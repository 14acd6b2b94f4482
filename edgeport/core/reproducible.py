"""Byte-reproducible artifacts: small fixes for converters that write run-dependent bytes.

Measured on the bundled model (``edgeport build`` twice with the same inputs): ONNX (onnx +
onnxruntime.quantization) and TFLite (onnx2tf + the TFLite converter) artifacts are
byte-identical as written. A Core ML ``.mlpackage`` from coremltools is not, for three reasons,
all fixed here after the package is saved:

- ``Manifest.json`` names its two items by random UUIDs (``uuid4`` in the ModelPackage
  library), new on every save: they are replaced by UUIDs derived from each item's path;
- ``model.mlmodel`` is a protobuf whose metadata map (``userDefined``) is serialized in hash
  order, which changes between processes: it is re-serialized with ``deterministic=True``
  (map entries sorted by key);
- that metadata holds ``com.github.apple.coremltools.conversion_date`` (the day of the
  conversion): it is set to the day of ``$SOURCE_DATE_EPOCH`` when that is set (the
  reproducible-builds convention) and removed otherwise (the bundle's manifest.json and
  report.json record when the bundle was built).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

# A fixed namespace: identifiers derived from it and an item path are the same on every run.
_NAMESPACE = uuid.UUID("5f0b3c1e-9a4d-4c59-8f53-2d1f6b7e0a11")
_DATE_KEY = "com.github.apple.coremltools.conversion_date"


def canonicalize_mlpackage(package: Path | str) -> None:
    """Rewrite a saved ``.mlpackage`` in place so the same model always gives the same bytes.

    Changes only run-dependent bytes (item identifiers, map order, the conversion date); the
    model, its weights and its other metadata are untouched. Returns nothing; a package without
    the expected files is left as it is.
    """
    package = Path(package)
    manifest_path = package / "Manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        entries = manifest.get("itemInfoEntries", {})
        renamed = {old: str(uuid.uuid5(_NAMESPACE, str(info.get("path", old)))) for old, info in entries.items()}
        manifest["itemInfoEntries"] = {renamed[old]: info for old, info in entries.items()}
        root = manifest.get("rootModelIdentifier")
        if root in renamed:
            manifest["rootModelIdentifier"] = renamed[root]
        # The layout the ModelPackage library writes itself: sorted keys, 4-space indent.
        manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")
    for spec_path in package.glob("Data/*/model.mlmodel"):
        from coremltools.proto import Model_pb2

        spec = Model_pb2.Model()
        spec.ParseFromString(spec_path.read_bytes())
        metadata = spec.description.metadata.userDefined
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        if _DATE_KEY in metadata:
            if epoch and epoch.strip().isdigit():
                metadata[_DATE_KEY] = datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d")
            else:
                del metadata[_DATE_KEY]
        spec_path.write_bytes(spec.SerializeToString(deterministic=True))
