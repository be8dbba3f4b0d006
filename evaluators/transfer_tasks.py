"""The transfer suite: networks of other families than the search proxies, to check that a found layer helps there.

EvoNorm's lesson: a layer found on one architecture often fails on others. The search proxies are small MLPs and
CNNs; the suite puts the candidate in a ResNet with the standard post-activation BasicBlock, in a pre-activation
ResNet, and in the feed-forward network of a small causal transformer trained on a synthetic sequence task. Both
ResNets use ``evaluators.placement.ResidualBlock``, the block the placement stage checks at initialization.

Placement follows the Space contract: an activation (``space.normalizes`` False) sits after a fixed BatchNorm in
the ResNets and after the transformer's first FFN layer, with fixed LayerNorms; a norm-act layer
(``space.normalizes`` True) takes every (norm, activation) pair's place and the transformer's LayerNorms, as EvoNorm
placed it. Everything is generated from a seed; nothing is downloaded.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluators.archs import CandidateSlot
from evaluators.config import ProxyConfig
from evaluators.placement import ResidualBlock
from evaluators.registry import Dataset, register_arch, register_dataset
from spaces import Genome, Space

# ---------------------------------------------------------------------------------------------- the suite

#: Every transfer proxy, named as its objectives are (``test_acc@resnet_post``). Steps are sized so that three
#: candidates and four baselines with three seeds each run in minutes on two cores (``--steps-scale`` changes them).
TRANSFER_SUITE = (
    ProxyConfig(
        name="resnet_post",
        arch="transfer_resnet",
        dataset="synthetic_images",
        arch_options={"block": "post"},
        steps=400,
        batch_size=64,
        lr=3e-3,
    ),
    ProxyConfig(
        name="resnet_pre",
        arch="transfer_resnet",
        dataset="synthetic_images",
        arch_options={"block": "pre"},
        steps=400,
        batch_size=64,
        lr=3e-3,
    ),
    ProxyConfig(name="lm", arch="transfer_lm", dataset="markov_sequences", steps=400, batch_size=64, lr=3e-3),
)


class NoTransferSuite(ValueError):
    """The space's genomes are whole networks (KAN): there is no slot in another network to put them in."""


def transfer_suite(space: Space, steps_scale: float = 1.0) -> list[ProxyConfig]:
    """The suite's proxies for layers of ``space``, each with its steps times ``steps_scale`` (at least 1)."""
    if space.task_sized:
        raise NoTransferSuite(
            f"space {space.kind!r} searches whole networks sized by the task; transfer needs a layer that fits "
            "into other networks (activation or norm-act spaces)"
        )
    if steps_scale <= 0:
        raise ValueError(f"steps scale must be positive, got {steps_scale}")
    return [p.model_copy(update={"steps": max(1, round(p.steps * steps_scale))}) for p in TRANSFER_SUITE]


# ---------------------------------------------------------------------------------------------- sequence task


@functools.lru_cache(maxsize=4)
def _markov_sequences(
    seed: int, vocab: int, chains: int, length: int, concentration: float, sizes: tuple[int, int, int]
) -> Dataset:
    rng = np.random.default_rng(seed)
    # One row-stochastic transition matrix per chain, drawn once per seed: the "language" of the task.
    transitions = rng.dirichlet(np.full(vocab, concentration), size=(chains, vocab))
    cumulative = transitions.cumsum(axis=2)
    total = sum(sizes)
    chain = rng.integers(chains, size=total)
    tokens = np.empty((total, length + 1), dtype=np.int64)
    tokens[:, 0] = rng.integers(vocab, size=total)
    for position in range(1, length + 1):
        rows = cumulative[chain, tokens[:, position - 1]]
        draws = rng.random(total)[:, None]
        tokens[:, position] = np.minimum((draws > rows).sum(axis=1), vocab - 1)
    x, y = torch.from_numpy(tokens[:, :length].copy()), torch.from_numpy(tokens[:, length].copy())
    cuts = [sizes[0], sizes[0] + sizes[1]]
    xs, ys = torch.tensor_split(x, cuts), torch.tensor_split(y, cuts)
    return Dataset(
        xs[0], ys[0], xs[1], ys[1], "classification", vocab, "markov_sequences", x_test=xs[2], y_test=ys[2]
    )


@register_dataset("markov_sequences")
def load_markov_sequences(
    seed: int = 0,
    *,
    vocab: int = 16,
    chains: int = 4,
    length: int = 32,
    concentration: float = 0.2,
    train_size: int = 4000,
    val_size: int = 1000,
    test_size: int = 1000,
) -> Dataset:
    """Next-token prediction: each sequence of ``length`` tokens comes from one of ``chains`` random Markov chains
    over ``vocab`` tokens (sparse transitions, Dirichlet ``concentration``); the target is the following token.

    Which chain made a sequence is hidden, so a model does better by reading the whole context (attention) than
    the last token alone. Train, validation and test sequences are drawn apart from one generator seeded by ``seed``.
    """
    if vocab < 2 or chains < 1 or length < 2 or concentration <= 0:
        raise ValueError("markov_sequences: vocab >= 2, chains >= 1, length >= 2 and concentration > 0")
    if min(train_size, val_size, test_size) < 1:
        raise ValueError("markov_sequences: train_size, val_size and test_size must be positive")
    sizes = (int(train_size), int(val_size), int(test_size))
    return _markov_sequences(int(seed), int(vocab), int(chains), int(length), float(concentration), sizes)


# ---------------------------------------------------------------------------------------------- architectures


def _slot(space: Space, genome: Genome, channels: int, layout: str = "nchw") -> CandidateSlot:
    return CandidateSlot(space.build(genome, channels=channels, layout=layout), layout)


def _norm_act(space: Space, genome: Genome, channels: int) -> nn.Module:
    """BatchNorm then the candidate activation, or the candidate alone where it is the norm too."""
    if space.normalizes:
        return _slot(space, genome, channels)
    return nn.Sequential(nn.BatchNorm2d(channels), _slot(space, genome, channels))


@register_arch("transfer_resnet")
def build_transfer_resnet(
    space: Space, genome: Genome, dataset: Dataset, *, block: str = "post", width: int = 16, blocks: int = 3
) -> nn.Module:
    """A stride-2 stem, ``blocks`` residual blocks of ``width`` channels, global pooling and a linear head.

    ``block`` "post": ResNet's BasicBlock ``act(x + bn(conv(act(bn(conv(x))))))``, the stem followed by
    norm + act; "pre": ``x + conv(act(bn(conv(act(bn(x))))))``, a final norm + act before pooling.
    """
    if block not in ("post", "pre"):
        raise ValueError(f"transfer_resnet: block must be 'post' or 'pre', got {block!r}")
    if width < 1 or blocks < 1:
        raise ValueError(f"transfer_resnet: width and blocks must be positive, got {width}, {blocks}")
    shape = dataset.input_shape
    if len(shape) != 3 or dataset.task != "classification":
        raise ValueError(f"transfer_resnet needs an image classification dataset shaped (C, H, W), got {shape}")
    post = block == "post"
    stem: list[nn.Module] = [nn.Conv2d(shape[0], width, 3, stride=2, padding=1, bias=False)]
    if post:
        stem.append(_norm_act(space, genome, width))
    body = [
        ResidualBlock(lambda: _slot(space, genome, width), width, batchnorm=not space.normalizes, post=post)
        for _ in range(blocks)
    ]
    tail = [] if post else [_norm_act(space, genome, width)]
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, dataset.num_classes)]
    return nn.Sequential(*stem, *body, *tail, *head)


class CausalBlock(nn.Module):
    """Pre-norm transformer block with causal self-attention; the FFN is fc1 -> candidate -> fc2.

    With a norm-act candidate, the candidate also replaces both LayerNorms (layout "nlc").
    """

    def __init__(self, space: Space, genome: Genome, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = (_token_norm(space, genome, dim) for _ in range(2))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.fc1 = nn.Linear(dim, dim * mlp_ratio)
        self.act = _slot(space, genome, dim * mlp_ratio, "nlc")
        self.fc2 = nn.Linear(dim * mlp_ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(n, length, dim))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


def _token_norm(space: Space, genome: Genome, dim: int) -> nn.Module:
    return _slot(space, genome, dim, "nlc") if space.normalizes else nn.LayerNorm(dim)


class CausalLM(nn.Module):
    """Token and position embeddings -> causal blocks -> final norm -> logits of the token after the sequence."""

    def __init__(
        self, space: Space, genome: Genome, vocab: int, length: int, dim: int, depth: int, heads: int, mlp: int
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.zeros(1, length, dim))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = nn.Sequential(*(CausalBlock(space, genome, dim, heads, mlp) for _ in range(depth)))
        self.norm = _token_norm(space, genome, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(self.blocks(self.embed(tokens) + self.position))
        return self.head(hidden[:, -1])


@register_arch("transfer_lm")
def build_transfer_lm(
    space: Space, genome: Genome, dataset: Dataset, *, dim: int = 32, depth: int = 2, heads: int = 4, mlp_ratio: int = 4
) -> nn.Module:
    """A small causal transformer language model over integer token sequences (N, L), predicting the next token."""
    shape = dataset.input_shape
    if len(shape) != 1 or dataset.x_train.is_floating_point() or dataset.task != "classification":
        raise ValueError(f"transfer_lm needs integer token sequences shaped (L,) with a next-token label, got {shape}")
    if min(dim, depth, heads, mlp_ratio) < 1 or dim % heads:
        raise ValueError(f"transfer_lm: positive sizes with dim divisible by heads, got dim {dim}, heads {heads}")
    return CausalLM(space, genome, dataset.num_classes, shape[0], dim, depth, heads, mlp_ratio)
