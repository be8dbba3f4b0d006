"""A procedurally generated image task hard enough to tell norm-act layers apart offline (no download).

Digits at 8x8 saturate the CPU proxies near 97%, so every layer looks the same there. Here the class is the shape
of the largest object in the image (disk, ring, square, frame, triangle, plus, half-disk, dumbbell, bar, three
dots), drawn with a random colour, position, scale and rotation over a random textured background (a colour
gradient and an oriented grating), among smaller distractor shapes of any kind, with pixel noise. Colour, position
and texture carry no class information: a network has to learn the shape's structure at several scales. The class
object's colour is near the complement of the background's, so it stands out; without that contrast the small
ResNet proxy stayed at chance for hundreds of steps (BENCHMARKS.md, issue 16).

Everything is generated vectorized in numpy from seeds, in about a second: train and validation from the dataset
seed, the test split from a fixed stream that no seed reaches, so a test image is never trained on and the test
split is the same for every seed.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from evaluators.registry import Dataset, register_dataset
from evaluators.vision import _image_dataset

SHAPES = ("disk", "ring", "square", "frame", "triangle", "plus", "half_disk", "dumbbell", "bar", "three_dots")
_TRAIN_STREAM, _TEST_STREAM = 1, 2  # SeedSequence entropy: train/val draw from [1, seed], test from [2]
_SQRT3 = np.sqrt(3.0)


def _disk(u: np.ndarray, v: np.ndarray, cu: float, cv: float, radius: float) -> np.ndarray:
    return np.hypot(u - cu, v - cv) - radius


def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (negative inside) of a shape of radius ~1 centred at the origin of (u, v)."""
    r = np.hypot(u, v)
    box = np.maximum(np.abs(u), np.abs(v))
    if shape == "disk":
        return r - 1.0
    if shape == "ring":
        return np.abs(r - 0.75) - 0.25
    if shape == "square":
        return box - 0.8
    if shape == "frame":
        return np.abs(box - 0.68) - 0.17
    if shape == "triangle":  # equilateral, circumradius 1
        return np.maximum.reduce([-v - 0.5, (_SQRT3 * u + v) / 2 - 0.5, (-_SQRT3 * u + v) / 2 - 0.5])
    if shape == "plus":
        return np.minimum(np.maximum(np.abs(u) - 0.28, np.abs(v) - 1.0), np.maximum(np.abs(v) - 0.28, np.abs(u) - 1.0))
    if shape == "half_disk":
        return np.maximum(r - 1.0, -v)
    if shape == "dumbbell":
        return np.minimum(_disk(u, v, -0.6, 0.0, 0.4), _disk(u, v, 0.6, 0.0, 0.4))
    if shape == "bar":
        return np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.25)
    if shape == "three_dots":
        dots = [_disk(u, v, 0.65 * np.cos(a), 0.65 * np.sin(a), 0.33) for a in np.pi / 2 + 2 * np.pi / 3 * np.arange(3)]
        return np.minimum.reduce(dots)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _shape_masks(kinds: np.ndarray, centre: np.ndarray, scale: np.ndarray, angle: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1], (n, size, size), of shape ``kinds[i]`` placed per image."""
    grid = np.arange(size, dtype=np.float32) + 0.5
    x = grid[None, None, :] - centre[:, 0, None, None]
    y = grid[None, :, None] - centre[:, 1, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    s = scale[:, None, None]
    u, v = (cos * x + sin * y) / s, (-sin * x + cos * y) / s
    masks = np.zeros((len(kinds), size, size), dtype=np.float32)
    for index, shape in enumerate(SHAPES):
        chosen = kinds == index
        if chosen.any():
            distance = _signed_distance(shape, u[chosen], v[chosen]) * s[chosen]  # in pixels
            masks[chosen] = np.clip(0.5 - distance, 0.0, 1.0)
    return masks


def _render(
    rng: np.random.Generator, labels: np.ndarray, size: int, distractors: int, texture: float, noise: float
) -> np.ndarray:
    """(n, 3, size, size) float32 images of the class shapes ``labels`` over textured, cluttered backgrounds."""
    n = len(labels)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    # Background: a random colour, a linear colour gradient and an oriented grating of random frequency.
    base = rng.uniform(0, 1, size=(n, 3, 1, 1)).astype(np.float32)
    slope = rng.normal(scale=0.4, size=(n, 3, 2)).astype(np.float32)
    images = base + slope[..., 0, None, None] * grid[None, None, None, :] + slope[..., 1, None, None] * grid[:, None]
    theta = rng.uniform(0, np.pi, size=n)
    frequency = rng.uniform(2, size / 3, size=n)
    phase = rng.uniform(0, 2 * np.pi, size=n)
    wave = np.cos(theta)[:, None, None] * grid[None, None, :] + np.sin(theta)[:, None, None] * grid[None, :, None]
    grating = np.sin(2 * np.pi * frequency[:, None, None] * wave + phase[:, None, None]).astype(np.float32)
    images += rng.uniform(0.0, texture, size=(n, 3, 1, 1)).astype(np.float32) * grating[:, None]
    # Distractors first (smaller, any shape), then the class object on top, largest in the image.
    layers = [(rng.integers(len(SHAPES), size=n), rng.uniform(0.12, 0.2, size=n)) for _ in range(distractors)]
    layers.append((labels, rng.uniform(0.24, 0.36, size=n)))
    for number, (kinds, radius) in enumerate(layers):
        scale = (radius * size).astype(np.float32)
        centre = rng.uniform(scale[:, None], size - scale[:, None], size=(n, 2)).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi, size=n).astype(np.float32)
        mask = _shape_masks(kinds, centre, scale, angle, size)[:, None]
        colour = rng.uniform(0, 1, size=(n, 3, 1, 1)).astype(np.float32)
        if number == distractors:  # the class object contrasts with the background: near its complement colour
            colour = np.clip(1 - base + rng.normal(scale=0.15, size=base.shape), 0, 1).astype(np.float32)
        images = images * (1 - mask) + colour * mask
    images += noise * rng.standard_normal(size=images.shape, dtype=np.float32)
    return images


def _balanced_labels(rng: np.random.Generator, count: int, num_classes: int) -> np.ndarray:
    return rng.permutation(np.arange(count) % num_classes)


@functools.lru_cache(maxsize=4)
def _shapes_images(
    seed: int,
    num_classes: int,
    train_size: int,
    val_size: int,
    test_size: int,
    size: int,
    distractors: int,
    texture: float,
    noise: float,
) -> Dataset:
    parts = {}
    train_rng = np.random.default_rng([_TRAIN_STREAM, seed])
    for split, count, rng in (
        ("train", train_size, train_rng),
        ("val", val_size, train_rng),
        ("test", test_size, np.random.default_rng([_TEST_STREAM])),
    ):
        labels = _balanced_labels(rng, count, num_classes)
        parts[split] = (torch.from_numpy(_render(rng, labels, size, distractors, texture, noise)), labels)
    return _image_dataset(parts, num_classes, "shapes_images")


@register_dataset("shapes_images")
def load_shapes_images(
    seed: int = 0,
    *,
    num_classes: int = 10,
    train_size: int = 4000,
    val_size: int = 1000,
    test_size: int = 2000,
    size: int = 16,
    distractors: int = 2,
    texture: float = 0.25,
    noise: float = 0.1,
) -> Dataset:
    """Shapes among clutter, 3 x ``size`` x ``size``: the class is the largest object's shape (the first
    ``num_classes`` of ``SHAPES``), under random colour, position, scale, rotation, background texture,
    ``distractors`` smaller shapes and Gaussian pixel noise of std ``noise`` (pixel values lie in [0, 1]).

    Classes are balanced in every split; train and validation are drawn by ``seed``, the test split is fixed.
    """
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"shapes_images: num_classes must be in 2..{len(SHAPES)}, got {num_classes}")
    if min(train_size, val_size, test_size) < num_classes:
        raise ValueError(f"shapes_images: every split needs at least num_classes={num_classes} images")
    if size < 12 or distractors < 0 or texture < 0 or noise < 0:
        raise ValueError(
            f"shapes_images: need size >= 12 and distractors, texture, noise >= 0; "
            f"got {size}, {distractors}, {texture}, {noise}"
        )
    sizes = (int(train_size), int(val_size), int(test_size), int(size), int(distractors))
    return _shapes_images(int(seed), int(num_classes), *sizes, float(texture), float(noise))
