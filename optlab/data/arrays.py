"""The arrays a dataset plug-in returns, checked and brought to the types training reads (optlab.dataset).

Images: uint8, or floats in [0, 1] (made float32), one image or feature vector per row; labels: 1-D
integers in [0, classes) (made uint8, or int32 past 256 classes); train and test alike in shape per
example. Anything else is a one-line DataError naming the dataset, the split and what is wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optlab.errors import DataError


def checked_arrays(name: str, arrays: Any, classes: int) -> tuple[np.ndarray, ...]:
    """A plug-in's (train_images, train_labels, test_images, test_labels) as training reads them: images
    uint8 or float32 in [0, 1], labels uint8 (int32 past 256 classes); a one-line DataError naming the
    dataset for anything else."""
    if not isinstance(arrays, (tuple, list)) or len(arrays) != 4:
        raise DataError(f"dataset {name!r}: its function must return (train_images, train_labels, test_images, "
                        f"test_labels), got {type(arrays).__name__}" + (f" of {len(arrays)}" if
                                                                        isinstance(arrays, (tuple, list)) else ""))
    out = []
    for split, (images, labels) in zip(("train", "test"), (arrays[:2], arrays[2:])):
        out += [_images(name, split, images), _labels(name, split, labels, classes)]
        if len(out[-1]) != len(out[-2]):
            raise DataError(f"dataset {name!r}: {len(out[-2])} {split}_images but {len(out[-1])} {split}_labels")
        if not len(out[-1]):
            raise DataError(f"dataset {name!r}: the {split} split holds no examples; it needs at least one")
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DataError(f"dataset {name!r}: train_images are {out[0].shape[1:]} each but test_images "
                        f"{out[2].shape[1:]}")
    return tuple(out)


def _images(name: str, split: str, images: Any) -> np.ndarray:
    images = np.asarray(images)
    what = f"dataset {name!r}: {split}_images"
    if images.ndim < 2:
        raise DataError(f"{what} must be (N, ...), one image or feature vector per row, got shape {images.shape}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{what} must be uint8, or floats in [0, 1]; got {images.dtype}")
    if images.size and not (np.all(np.isfinite(images)) and images.min() >= 0 and images.max() <= 1):
        raise DataError(f"{what} must be floats in [0, 1] (or uint8); found values in "
                        f"[{np.nanmin(images):g}, {np.nanmax(images):g}]" + ("" if np.all(np.isfinite(images))
                                                                              else " and non-finite ones"))
    return images.astype(np.float32)


def _labels(name: str, split: str, labels: Any, classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    what = f"dataset {name!r}: {split}_labels"
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{what} must be a 1-D array of integers, got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise DataError(f"{what}: label {bad} out of range 0..{classes - 1} (classes={classes})")
    return labels.astype(np.uint8 if classes <= 256 else np.int32)
