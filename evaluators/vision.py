"""Image datasets and image proxy architectures for norm-act search (EvoNorm's CIFAR-style proxies).

Datasets give (N, C, H, W) float tensors in train, validation and test splits, standardized with training
statistics; validation is carved out of the training data and the test split is held out. In every architecture each
norm+activation pair is a ``CandidateSlot`` holding its own ``space.build(genome, channels=C, layout=...)``.
Where the original network has a normalization without an activation (the last BN of a residual block,
the projection BN of a shortcut or of MobileNetV2's linear bottleneck, a transformer's LayerNorms), the
candidate takes that place too, as EvoNorm did, so no batch-dependent BatchNorm is left in an S-mode proxy.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluators.archs import CandidateSlot
from evaluators.data import TEST_SPLIT_SEED, stratified_split
from evaluators.registry import Dataset, register_arch, register_dataset
from spaces import Genome, Space

# ---------------------------------------------------------------------------------------------- datasets


def _image_dataset(splits: dict[str, tuple[torch.Tensor, Any]], num_classes: int, name: str) -> Dataset:
    """``splits`` maps train, val and test to (images, labels); per-channel zero mean / unit variance from train."""
    x_train = splits["train"][0].float()
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    tensors = {}
    for split, (x, y) in splits.items():
        tensors[f"x_{split}"] = ((x.float() - mean) / std).contiguous()
        tensors[f"y_{split}"] = torch.as_tensor(y, dtype=torch.int64)
    return Dataset(**tensors, task="classification", num_classes=num_classes, name=name)


@functools.lru_cache(maxsize=4)
def _digits_images(seed: int, size: int, channels: int, val_fraction: float, test_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    rest, test = stratified_split(labels, test_fraction, TEST_SPLIT_SEED)
    train, val = (rest[i] for i in stratified_split(labels[rest], val_fraction / (1 - test_fraction), seed))
    x = torch.from_numpy(images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.expand(-1, channels, -1, -1)
    splits = {split: (x[index], labels[index]) for split, index in (("train", train), ("val", val), ("test", test))}
    return _image_dataset(splits, 10, "digits_images")


@register_dataset("digits_images")
def load_digits_images(
    seed: int = 0, *, size: int = 16, channels: int = 1, val_fraction: float = 0.2, test_fraction: float = 0.2
) -> Dataset:
    """scikit-learn's 8x8 digits as (channels, size, size) images, bilinearly upsampled; split stratified into
    train, validation and test (fractions of the whole set) like ``digits``: fixed test, validation by ``seed``."""
    if size < 8:
        raise ValueError(f"digits_images: size must be at least 8, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"digits_images: channels must be 1 or 3, got {channels}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"digits_images: {name} must be in (0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError("digits_images: val_fraction + test_fraction must be below 1")
    return _digits_images(int(seed), int(size), int(channels), float(val_fraction), float(test_fraction))


# Integer frequency vectors (fx, fy) of the synthetic gratings, one half-plane so no two are the same pattern.
_FREQUENCIES = [(fx, fy) for fx in range(4) for fy in range(-3, 4) if fx > 0 or fy > 0]


@functools.lru_cache(maxsize=4)
def _synthetic_images(
    seed: int, num_classes: int, train_size: int, val_size: int, test_size: int, size: int, channels: int, noise: float
) -> Dataset:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(_FREQUENCIES), size=num_classes, replace=False)
    frequencies = np.array([_FREQUENCIES[i] for i in picks], dtype=np.float64)
    colors = rng.normal(size=(num_classes, channels))
    colors /= np.linalg.norm(colors, axis=1, keepdims=True)
    total = train_size + val_size + test_size
    labels = rng.integers(num_classes, size=total)
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    angle = 2 * np.pi * (frequencies[labels, 0, None, None] * rows + frequencies[labels, 1, None, None] * cols) / size
    phase = rng.uniform(0, 2 * np.pi, size=(total, 1, 1))
    contrast = rng.uniform(0.3, 1.0, size=(total, 1, 1, 1))
    brightness = rng.normal(scale=0.5, size=(total, 1, 1, 1))
    grating = np.sin(angle + phase)[:, None] * colors[labels][:, :, None, None]
    # A distractor grating of a random frequency and color in every image, weaker than the class grating.
    other = rng.integers(len(_FREQUENCIES), size=total)
    other_f = np.array(_FREQUENCIES, dtype=np.float64)[other]
    other_angle = 2 * np.pi * (other_f[:, 0, None, None] * rows + other_f[:, 1, None, None] * cols) / size
    other_phase = rng.uniform(0, 2 * np.pi, size=(total, 1, 1))
    other_color = rng.normal(size=(total, channels)) / np.sqrt(channels)
    distractor = 0.5 * np.sin(other_angle + other_phase)[:, None] * other_color[:, :, None, None]
    images = contrast * grating + distractor + brightness + noise * rng.normal(size=(total, channels, size, size))
    x = torch.from_numpy(images.astype(np.float32))
    cuts = [train_size, train_size + val_size]
    parts = zip(torch.tensor_split(x, cuts), np.split(labels, cuts), strict=True)
    return _image_dataset(dict(zip(("train", "val", "test"), parts, strict=True)), num_classes, "synthetic_images")


@register_dataset("synthetic_images")
def load_synthetic_images(
    seed: int = 0,
    *,
    num_classes: int = 10,
    train_size: int = 2000,
    val_size: int = 500,
    test_size: int = 500,
    size: int = 16,
    channels: int = 3,
    noise: float = 1.0,
) -> Dataset:
    """Colored sine gratings: the class is the grating's spatial frequency and orientation.

    Each image has a random phase (so no pixel's mean carries the class: a linear model on pixels stays near
    chance), random contrast and brightness, a weaker distractor grating of a random frequency, and Gaussian
    noise: a small convnet needs a few hundred steps to learn it well.
    """
    if not 2 <= num_classes <= len(_FREQUENCIES):
        raise ValueError(f"synthetic_images: num_classes must be in 2..{len(_FREQUENCIES)}, got {num_classes}")
    if min(train_size, val_size, test_size, channels) < 1 or size < 8 or noise < 0:
        raise ValueError("synthetic_images: sizes must be positive (size >= 8) and noise >= 0")
    sizes = (int(train_size), int(val_size), int(test_size), int(size), int(channels))
    return _synthetic_images(int(seed), int(num_classes), *sizes, float(noise))


CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue 32x32 planes
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"


def read_cifar10_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) from one file of the CIFAR-10 binary version (raw bytes)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR10_RECORD_BYTES:
        raise ValueError(
            f"{path}: {raw.size} bytes is not a whole number of {CIFAR10_RECORD_BYTES}-byte CIFAR-10 records"
        )
    records = raw.reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: label {labels.max()} is outside 0..9; is this the CIFAR-10 (not CIFAR-100) binary?")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _cifar10_folder(root: str | None) -> Path:
    hint = (
        "give dataset_options.root: the folder of the CIFAR-10 binary version "
        "(cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted), "
        f"holding {', '.join(CIFAR10_TRAIN_FILES)} and {CIFAR10_TEST_FILE}"
    )
    if root is None:
        raise ValueError(f"cifar10: no data folder; {hint}")
    folder = Path(root).expanduser()
    if (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    if not folder.is_dir():
        raise FileNotFoundError(f"cifar10: folder {folder} does not exist; {hint}")
    if not (folder / CIFAR10_TEST_FILE).is_file() or not any((folder / f).is_file() for f in CIFAR10_TRAIN_FILES):
        raise FileNotFoundError(f"cifar10: {folder} lacks the binary batch files; {hint}")
    return folder


def _subset(images: np.ndarray, labels: np.ndarray, count: int | None, rng: np.random.Generator):
    if count is None or count >= len(labels):
        return images, labels
    if count < 1:
        raise ValueError(f"cifar10: subset sizes must be positive, got {count}")
    index = np.sort(rng.choice(len(labels), size=count, replace=False))
    return images[index], labels[index]


@functools.lru_cache(maxsize=2)
def _cifar10(
    folder: str, seed: int, val_fraction: float, subset: int | None, val_subset: int | None, test_subset: int | None
) -> Dataset:
    parts = [read_cifar10_binary(Path(folder) / f) for f in CIFAR10_TRAIN_FILES if (Path(folder) / f).is_file()]
    images, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    train, val = stratified_split(labels, val_fraction, seed)
    rng = np.random.default_rng(seed)
    picked = {
        "train": _subset(images[train], labels[train], subset, rng),
        "val": _subset(images[val], labels[val], val_subset, rng),
        "test": _subset(*read_cifar10_binary(Path(folder) / CIFAR10_TEST_FILE), test_subset, rng),
    }
    splits = {split: (torch.from_numpy(x) / 255.0, y) for split, (x, y) in picked.items()}
    return _image_dataset(splits, 10, "cifar10")


@register_dataset("cifar10")
def load_cifar10(
    seed: int = 0,
    *,
    root: str | None = None,
    val_fraction: float = 0.1,
    subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
) -> Dataset:
    """CIFAR-10 from a local folder in its binary version (no download, no pickle).

    Validation is ``val_fraction`` of the training batches (stratified, by ``seed``); the test batch is the test
    split. ``subset`` / ``val_subset`` / ``test_subset`` keep a seeded random sample of that many images of each
    split (the full set is ~740 MB as float32).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"cifar10: val_fraction must be in (0, 1), got {val_fraction}")
    return _cifar10(str(_cifar10_folder(root)), int(seed), float(val_fraction), subset, val_subset, test_subset)


# ---------------------------------------------------------------------------------------------- architectures


def _image_shape(arch: str, dataset: Dataset) -> tuple[int, int, int]:
    shape = dataset.input_shape
    if len(shape) != 3 or dataset.task != "classification":
        raise ValueError(f"{arch} needs an image classification dataset shaped (C, H, W), got {shape}")
    return shape


def _candidate(space: Space, genome: Genome, channels: int, layout: str = "nchw", zero_gamma: bool = False):
    """A slot with its own layer; ``zero_gamma`` starts a residual branch at zero (EvoNorm: gamma 0 there)."""
    layer = space.build(genome, channels=channels, layout=layout)
    weight = getattr(layer, "weight", None)
    if zero_gamma and isinstance(weight, nn.Parameter):
        nn.init.zeros_(weight)
    return CandidateSlot(layer, layout)


def _positive(arch: str, **values: int) -> None:
    bad = {name: value for name, value in values.items() if int(value) < 1}
    if bad:
        raise ValueError(f"{arch}: options must be positive integers, got {bad}")


class BasicBlock(nn.Module):
    """conv3x3 -> candidate -> conv3x3 -> candidate, plus the shortcut.

    The candidate also replaces the second BN (no ReLU in the original) and the projection shortcut's BN,
    and there is no ReLU after the addition: the candidate is the block's only nonlinearity.
    """

    def __init__(self, space: Space, genome: Genome, in_ch: int, out_ch: int, stride: int, zero_gamma: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.act1 = _candidate(space, genome, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.act2 = _candidate(space, genome, out_ch, zero_gamma=zero_gamma)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), _candidate(space, genome, out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(x)))) + self.shortcut(x)


def _pooled_head(features: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, num_classes))


@register_arch("resnet")
def build_resnet(
    space: Space,
    genome: Genome,
    dataset: Dataset,
    *,
    width: int = 16,
    stages: int = 3,
    blocks_per_stage: int = 1,
    zero_init_residual: bool = True,
) -> nn.Module:
    """CIFAR-style ResNet (6n+2 layers for n blocks per stage): widths width * 2^i, stride 2 between stages."""
    _positive("resnet", width=width, stages=stages, blocks_per_stage=blocks_per_stage)
    in_ch = _image_shape("resnet", dataset)[0]
    layers: list[nn.Module] = [nn.Conv2d(in_ch, width, 3, 1, 1, bias=False), _candidate(space, genome, width)]
    channels = width
    for stage in range(stages):
        out_ch = width * 2**stage
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(space, genome, channels, out_ch, stride, zero_init_residual))
            channels = out_ch
    layers.append(_pooled_head(channels, dataset.num_classes))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> candidate -> 3x3 depthwise -> candidate -> 1x1 project -> candidate (+ input if shapes match).

    The projection's BN is linear in MobileNetV2; here the candidate replaces it like every other norm.
    """

    def __init__(self, space: Space, genome: Genome, in_ch: int, out_ch: int, stride: int, expansion: int, zero_gamma):
        super().__init__()
        hidden = in_ch * expansion
        self.residual = stride == 1 and in_ch == out_ch
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1, bias=False),
            _candidate(space, genome, hidden),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            _candidate(space, genome, hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            _candidate(space, genome, out_ch, zero_gamma=zero_gamma and self.residual),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


@register_arch("mobilenetv2")
def build_mobilenetv2(
    space: Space,
    genome: Genome,
    dataset: Dataset,
    *,
    width: int = 16,
    stages: int = 3,
    blocks_per_stage: int = 2,
    expansion: int = 4,
    zero_init_residual: bool = True,
) -> nn.Module:
    """MobileNetV2-style net: stem, stages of inverted residuals (widths width * 2^i), 1x1 head conv, pooling."""
    _positive("mobilenetv2", width=width, stages=stages, blocks_per_stage=blocks_per_stage, expansion=expansion)
    in_ch = _image_shape("mobilenetv2", dataset)[0]
    layers: list[nn.Module] = [nn.Conv2d(in_ch, width, 3, 1, 1, bias=False), _candidate(space, genome, width)]
    channels = width
    for stage in range(stages):
        out_ch = width * 2**stage
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(InvertedResidual(space, genome, channels, out_ch, stride, expansion, zero_init_residual))
            channels = out_ch
    head = 4 * channels
    layers += [nn.Conv2d(channels, head, 1, bias=False), _candidate(space, genome, head)]
    layers.append(_pooled_head(head, dataset.num_classes))
    return nn.Sequential(*layers)


class TokenBlock(nn.Module):
    """Pre-norm transformer block on (N, L, C) tokens.

    Candidate slots (layout "nlc"): the two pre-norms, and the MLP's activation as a norm+act pair
    (fc1 -> candidate -> fc2, the place of NormFormer's LN-GELU).
    """

    def __init__(self, space: Space, genome: Genome, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1 = _candidate(space, genome, dim, "nlc")
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = _candidate(space, genome, dim, "nlc")
        self.fc1 = nn.Linear(dim, dim * mlp_ratio)
        self.act = _candidate(space, genome, dim * mlp_ratio, "nlc")
        self.fc2 = nn.Linear(dim * mlp_ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(attended.transpose(1, 2).reshape(n, length, dim))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class VisionTransformer(nn.Module):
    """Patch embedding + learned positions -> token blocks -> candidate (final norm) -> token mean -> linear."""

    def __init__(self, space: Space, genome: Genome, dataset: Dataset, dim, depth, heads, patch, mlp_ratio):
        super().__init__()
        in_ch, height, width = _image_shape("vit", dataset)
        if height % patch or width % patch:
            raise ValueError(f"vit: patch {patch} does not divide the image size {height}x{width}")
        if dim % heads:
            raise ValueError(f"vit: dim {dim} is not divisible by heads {heads}")
        self.embed = nn.Conv2d(in_ch, dim, patch, patch)
        self.position = nn.Parameter(torch.zeros(1, (height // patch) * (width // patch), dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.Sequential(*(TokenBlock(space, genome, dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = _candidate(space, genome, dim, "nlc")
        self.head = nn.Linear(dim, dataset.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.position
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


@register_arch("vit")
def build_vit(
    space: Space,
    genome: Genome,
    dataset: Dataset,
    *,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    patch: int = 4,
    mlp_ratio: int = 2,
) -> nn.Module:
    """A small ViT whose norms and MLP activations are candidates on (N, L, C) tokens (layout "nlc")."""
    _positive("vit", dim=dim, depth=depth, heads=heads, patch=patch, mlp_ratio=mlp_ratio)
    return VisionTransformer(space, genome, dataset, dim, depth, heads, patch, mlp_ratio)
