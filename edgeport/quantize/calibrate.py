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
        self._iterator = self._batches()

    def _batches(self):
        """Batches of one size: ORT's histogram calibrators (percentile, entropy) stack every
        batch's activations into one array and fail on a smaller last batch, so the remainder
        is left out when there is more than one batch."""
        count = len(self.dataset)
        usable = count - count % self.batch_size if count > self.batch_size else count
        for start in range(0, usable, self.batch_size):
            yield self.dataset.batch(start, min(start + self.batch_size, usable))

    def get_next(self):
        """Return the next batch of inputs by name, or None when done."""
        batch = next(self._iterator, None)
        if batch is not None and self.progress:
            self.progress(len(next(iter(batch.values()))))
        return batch

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._iterator = self._batches()
