"""Calibration: stream a Dataset to ONNX Runtime's calibrator in batches."""

from __future__ import annotations

from onnxruntime.quantization import CalibrationDataReader

from edgeport.data import Dataset


class DatasetReader(CalibrationDataReader):
    """Feeds ``dataset`` to ORT's calibrator one batch at a time (never all at once)."""

    def __init__(self, dataset: Dataset, batch_size: int, progress=None) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.progress = progress
        self._iterator = dataset.batches(batch_size)

    def get_next(self):
        """Return the next batch of inputs by name, or None when done."""
        batch = next(self._iterator, None)
        if batch is not None and self.progress:
            self.progress(len(next(iter(batch.values()))))
        return batch

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._iterator = self.dataset.batches(self.batch_size)
