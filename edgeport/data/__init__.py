"""Calibration and evaluation data: .npz/.npy arrays, image folders, text files (one sentence a
line, tokenized by the model's tokenizer), or synthetic inputs.

Data is read lazily and preprocessed batch by batch: only the first ``max_samples`` rows of
an array file are ever read (``.npz`` members are parsed header-first, ``.npy`` files are
memory-mapped), and image files are decoded when their batch is needed. Nothing here
unpickles: object arrays are refused.

Shapes as they come (see README, "Data"): every array is sample-first (one row per sample) and
the row is fed where the model's batch axis sits (axis 1 of a state [2, batch, 128]); an input
without a batch axis (a rank-0 sample rate) gets one value per batch, from a 0-d array for all
samples or a row per sample. Samples of different shapes (``.npz`` keys ``name/0``,
``name/1``..., one array per sample; sentences tokenized at their own length) are grouped
into batches of equal shape, in order (:meth:`Dataset.spans`).

One module a job: :mod:`.load` opens a source (``load_dataset``) as arrays (:mod:`.npz` reads,
:mod:`.arrays` picks inputs and labels), an image folder (:mod:`.images`), sentences
(:mod:`.text`) or random inputs (:mod:`.synthetic`); :mod:`.dataset` batches the samples and
:mod:`.conform` fits them to the model's inputs as :mod:`.preprocess` says. Import from those
modules inside edgeport; the names below are re-exported for tests, benchmarks and users.
"""

from edgeport.data.dataset import Dataset, concatenate_samples
from edgeport.data.load import load_dataset
from edgeport.data.preprocess import Preprocess, parse_preprocess
from edgeport.data.synthetic import synthetic_dataset
from edgeport.data.text import TextEncoder, read_sentences

__all__ = [
    "Dataset",
    "Preprocess",
    "TextEncoder",
    "concatenate_samples",
    "load_dataset",
    "parse_preprocess",
    "read_sentences",
    "synthetic_dataset",
]
