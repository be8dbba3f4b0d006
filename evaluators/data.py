"""Offline classification datasets for the activation proxies: MNIST-1D and scikit-learn digits.

Both are built locally (no download), split into train, validation and test, standardized with training
statistics and cached per process, because a worker builds its datasets once and then trains many candidates
on them. Validation is carved out of the training data (stratified, seeded); the test split is fixed and held
out from search.
"""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

import numpy as np
import torch

from evaluators.registry import Dataset, register_dataset

TEST_SPLIT_SEED = 0  # digits' test split never moves with the dataset seed, so no seed can train on it


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) with ``fraction`` of every class held out, chosen by ``seed``; both sorted.

    A set with a class of fewer than two members (a tiny test file) cannot be stratified: it is split plainly.
    """
    from sklearn.model_selection import train_test_split

    stratify = labels if np.unique(labels, return_counts=True)[1].min() >= 2 else None
    kept, held_out = train_test_split(np.arange(len(labels)), test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(kept), np.sort(held_out)


def _check_fraction(dataset: str, name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{dataset}: {name} must be in (0, 1), got {value}")


def _to_dataset(splits: dict[str, tuple[np.ndarray, np.ndarray]], num_classes: int, name: str) -> Dataset:
    """``splits`` maps train, val and test to (features, labels); features are standardized with train's statistics."""
    x_train = np.asarray(splits["train"][0], np.float64)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # constant features are only centred
    tensors = {}
    for split, (x, y) in splits.items():
        standardized = (np.asarray(x, np.float64) - mean) / std
        tensors[f"x_{split}"] = torch.from_numpy(standardized.astype(np.float32))
        tensors[f"y_{split}"] = torch.from_numpy(np.asarray(y, np.int64))
    return Dataset(**tensors, task="classification", num_classes=num_classes, name=name)


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


@functools.lru_cache(maxsize=8)
def _mnist1d(seed: int, cache_dir: str | None, val_fraction: float) -> Dataset:
    arrays = _mnist1d_arrays(42 + seed, cache_dir)
    train, val = stratified_split(arrays["y"], val_fraction, seed)
    splits = {
        "train": (arrays["x"][train], arrays["y"][train]),
        "val": (arrays["x"][val], arrays["y"][val]),
        "test": (arrays["x_test"], arrays["y_test"]),
    }
    return _to_dataset(splits, 10, "mnist1d")


@register_dataset("mnist1d")
def load_mnist1d(seed: int = 0, *, cache_dir: str | None = None, val_fraction: float = 0.2) -> Dataset:
    """MNIST-1D, 40 features, 10 classes; seed 0 is the paper's set (generator seed 42).

    The official 4,000 training samples give train (3,200) and a stratified validation split (800, by
    ``val_fraction``); the official 1,000 test samples are the test split.
    """
    _check_fraction("mnist1d", "val_fraction", val_fraction)
    return _mnist1d(int(seed), None if cache_dir is None else str(cache_dir), float(val_fraction))


@functools.lru_cache(maxsize=8)
def _digits(seed: int, val_fraction: float, test_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rest, test = stratified_split(y, test_fraction, TEST_SPLIT_SEED)
    train, val = (rest[i] for i in stratified_split(y[rest], val_fraction / (1 - test_fraction), seed))
    splits = {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}
    return _to_dataset(splits, 10, "digits")


@register_dataset("digits")
def load_digits_dataset(seed: int = 0, *, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 samples, 64 features, 10 classes), split stratified into train, validation
    and test (fractions of the whole set); the test split is fixed, the validation split is drawn by ``seed``."""
    _check_fraction("digits", "val_fraction", val_fraction)
    _check_fraction("digits", "test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"digits: val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}")
    return _digits(int(seed), float(val_fraction), float(test_fraction))
