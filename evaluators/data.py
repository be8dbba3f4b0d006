"""Offline classification datasets for the activation proxies: MNIST-1D and scikit-learn digits.

Both are built locally (no download), standardized with training statistics and cached per process,
because a worker builds its datasets once and then trains many candidates on them.
"""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

import numpy as np
import torch

from evaluators.registry import Dataset, register_dataset


def _standardize(x_train: np.ndarray, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature zero mean / unit variance from the training split; constant features are only centred."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return (x_train - mean) / std, (x_val - mean) / std


def _to_dataset(x_train, y_train, x_val, y_val, num_classes: int, name: str) -> Dataset:
    x_train, x_val = _standardize(np.asarray(x_train, np.float64), np.asarray(x_val, np.float64))
    return Dataset(
        x_train=torch.from_numpy(x_train.astype(np.float32)),
        y_train=torch.from_numpy(np.asarray(y_train, np.int64)),
        x_val=torch.from_numpy(x_val.astype(np.float32)),
        y_val=torch.from_numpy(np.asarray(y_val, np.int64)),
        task="classification",
        num_classes=num_classes,
        name=name,
    )


def _generate_mnist1d(seed: int) -> dict[str, np.ndarray]:
    """MNIST-1D generated locally; its generator reseeds the global RNGs, so their state is restored after."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {key: raw[key] for key in ("x", "y", "x_test", "y_test")}


@functools.lru_cache(maxsize=8)
def _mnist1d_arrays(seed: int, cache_dir: str | None) -> dict[str, np.ndarray]:
    if cache_dir is None:
        return _generate_mnist1d(seed)
    path = Path(cache_dir) / f"mnist1d_seed{seed}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    arrays = _generate_mnist1d(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)  # atomic, so concurrent workers never read a half-written file
    return arrays


@register_dataset("mnist1d")
def load_mnist1d(seed: int = 0, *, cache_dir: str | None = None) -> Dataset:
    """MNIST-1D (4000 train / 1000 val, 40 features, 10 classes); seed 0 is the paper's set (generator seed 42)."""
    arrays = _mnist1d_arrays(42 + int(seed), None if cache_dir is None else str(cache_dir))
    return _to_dataset(arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"], 10, "mnist1d")


@functools.lru_cache(maxsize=8)
def _digits(seed: int, val_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x / 16.0, y, test_size=val_fraction, random_state=seed, stratify=y
    )
    return _to_dataset(x_train, y_train, x_val, y_val, 10, "digits")


@register_dataset("digits")
def load_digits_dataset(seed: int = 0, *, val_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 samples, 64 features, 10 classes) with a stratified split seeded by ``seed``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"digits: val_fraction must be in (0, 1), got {val_fraction}")
    return _digits(int(seed), float(val_fraction))
