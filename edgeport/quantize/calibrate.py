"""Calibration: stream a Dataset to ONNX Runtime's calibrator in batches."""

from __future__ import annotations

from onnxruntime.quantization import CalibrationDataReader

from edgeport.data.dataset import Dataset


class DatasetReader(CalibrationDataReader):
    """Feeds ``dataset`` to ORT's calibrator one batch of one shape at a time (never all at once).

    ``len()`` and ``set_range`` (over batches) let ORT collect batch by batch
    (``CalibStridedMinMax``): its histogram calibrators stack one collect's batches with
    ``np.asarray``, which fails on batches of different shapes (sentences at their own length).
    """

    def __init__(self, dataset: Dataset, batch_size: int, progress=None) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.progress = progress
        spans = dataset.spans(batch_size)
        if len(spans) > 1 and spans[-1][1] - spans[-1][0] < spans[0][1] - spans[0][0]:
            # One collect of same-shaped batches is stacked too, so a smaller last batch failed
            # ('inhomogeneous shape') on a conv model with 48 samples: it is left out.
            spans = spans[:-1]
        self._spans = spans
        self._iterator = iter(self._spans)

    def __len__(self) -> int:
        return len(self._spans)

    def get_next(self):
        """Return the next batch of inputs by name, or None when done."""
        span = next(self._iterator, None)
        if span is None:
            return None
        if self.progress:
            self.progress(span[1] - span[0])
        return self.dataset.batch(*span)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read only batches ``start_index:end_index`` until the next rewind or range."""
        self._iterator = iter(self._spans[start_index:end_index])

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._iterator = iter(self._spans)
