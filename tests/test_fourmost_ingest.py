"""4MOST ingestion (lymannet.fourmost.ingest): each object's train/val/test split."""

import numpy as np

from lymannet.fourmost import ingest


def test_splits_are_stable_per_object():
    files = [f"PAQS_absorber_{i:06d}.fits" for i in range(2000)]
    split = ingest.assign_splits(files, 1, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert 0.75 < np.mean(split == "train") < 0.85
    assert np.array_equal(
        ingest.assign_splits(files[:100], 1, {"train": 0.8, "val": 0.1, "test": 0.1}), split[:100]
    )
