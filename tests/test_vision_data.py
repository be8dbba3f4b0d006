"""Image datasets (CIFAR-10 binary loader, digits, synthetic) and the image proxies with norm-act candidates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluators.archs import candidate_slots
from evaluators.registry import get_arch, get_dataset
from evaluators.vision import CIFAR10_RECORD_BYTES, read_cifar10_binary
from spaces.normact import NormActLayer, NormActSpace


def _write_cifar_file(path: Path, labels: list[int], rng: np.random.Generator) -> np.ndarray:
    pixels = rng.integers(0, 256, size=(len(labels), 3 * 32 * 32), dtype=np.uint8)
    records = np.concatenate([np.array(labels, dtype=np.uint8)[:, None], pixels], axis=1)
    path.write_bytes(records.tobytes())
    return pixels.reshape(-1, 3, 32, 32)


def test_cifar10_binary_loader_reads_the_records_a_test_wrote(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    first = _write_cifar_file(folder / "data_batch_1.bin", [3, 1, 4, 1, 5], rng)
    _write_cifar_file(folder / "data_batch_2.bin", [9, 2, 6], rng)
    test_pixels = _write_cifar_file(folder / "test_batch.bin", [0, 7], rng)

    images, labels = read_cifar10_binary(folder / "data_batch_1.bin")
    assert images.shape == (5, 3, 32, 32) and labels.tolist() == [3, 1, 4, 1, 5]
    assert np.array_equal(images, first)  # red plane first, row-major, as the format specifies

    data = get_dataset("cifar10")(seed=0, root=str(tmp_path))  # the parent folder is accepted too
    # Validation is carved out of the training batches; the test batch is the test split.
    assert data.x_train.shape == (7, 3, 32, 32) and data.x_val.shape == (1, 3, 32, 32)
    assert sorted(data.y_train.tolist() + data.y_val.tolist()) == [1, 1, 2, 3, 4, 5, 6, 9]
    assert data.x_test.shape == (2, 3, 32, 32) and data.y_test.tolist() == [0, 7]
    assert data.num_classes == 10 and data.x_train.dtype == torch.float32
    # Standardization is monotone per channel: the brightest raw pixel stays the brightest.
    raw = torch.from_numpy(test_pixels[:, 0]).float()
    assert torch.equal(data.x_test[:, 0].flatten().argmax(), raw.flatten().argmax())
    small = get_dataset("cifar10")(seed=1, root=str(folder), subset=4, val_subset=1)
    assert len(small.x_train) == 4 and len(small.x_val) == 1


def test_cifar10_loader_errors_say_what_to_provide(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        get_dataset("cifar10")(seed=0, root=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="lacks the binary batch files"):
        get_dataset("cifar10")(seed=0, root=str(tmp_path))
    with pytest.raises(ValueError, match="dataset_options.root"):
        get_dataset("cifar10")(seed=0)
    broken = tmp_path / "data_batch_1.bin"
    broken.write_bytes(b"\x00" * (CIFAR10_RECORD_BYTES + 5))
    with pytest.raises(ValueError, match="not a whole number"):
        read_cifar10_binary(broken)


def test_digits_images_are_upsampled_and_split_by_seed():
    data = get_dataset("digits_images")(seed=0, size=16, channels=3)
    assert data.x_train.shape[1:] == (3, 16, 16) and len(data.x_train) + len(data.x_val) + len(data.x_test) == 1797
    assert torch.equal(data.x_train[:, 0], data.x_train[:, 2])
    other = get_dataset("digits_images")(seed=1)
    assert other.x_train.shape[1:] == (1, 16, 16) and not torch.equal(other.y_train[:50], data.y_train[:50])


def test_synthetic_images_are_seeded_and_not_linearly_trivial():
    a = get_dataset("synthetic_images")(seed=0, train_size=600, val_size=200)
    b = get_dataset("synthetic_images")(seed=0, train_size=600, val_size=200)
    assert torch.equal(a.x_train, b.x_train) and a.x_train.shape == (600, 3, 16, 16)
    # A least-squares linear classifier on raw pixels stays near chance (random phases), well below a convnet.
    x = torch.cat([a.x_train.flatten(1), torch.ones(600, 1)], dim=1)
    w = torch.linalg.lstsq(x, F.one_hot(a.y_train, 10).float()).solution
    val = torch.cat([a.x_val.flatten(1), torch.ones(200, 1)], dim=1)
    assert ((val @ w).argmax(1) == a.y_val).float().mean() < 0.3


ARCHS = [
    ("resnet", "evonorm_b0", {"width": 8}),
    ("mobilenetv2", "evonorm_s0", {"width": 8, "blocks_per_stage": 1}),
    ("vit", "ln_gelu", {"dim": 32, "depth": 1}),
]


@pytest.mark.parametrize(("arch", "seed", "options"), ARCHS)
def test_archs_fill_every_slot_with_its_own_candidate_and_learn(arch, seed, options):
    torch.manual_seed(0)
    data = get_dataset("synthetic_images")(seed=0, train_size=256, val_size=64)
    space = NormActSpace(mode="B")
    model = get_arch(arch)(space, space.seeds()[seed], data, **options)
    slots = candidate_slots(model)
    assert len(slots) >= 4 and all(isinstance(slot.layer, NormActLayer) for slot in slots)
    assert len({id(slot.layer) for slot in slots}) == len(slots)
    if arch == "vit":
        assert {slot.layer.layout for slot in slots} == {"nlc"}
    x, y = data.x_train[:64], data.y_train[:64]
    assert model(x).shape == (64, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    initial = F.cross_entropy(model(x), y).item()
    for _ in range(15):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert F.cross_entropy(model(x), y).item() < initial * 0.9
    model.eval()
    assert torch.isfinite(model(data.x_val)).all()


def test_resnet_starts_residual_branches_at_zero_and_checks_its_dataset():
    data = get_dataset("synthetic_images")(seed=0, train_size=32, val_size=8)
    space = NormActSpace(mode="S")
    model = get_arch("resnet")(space, space.seeds()["gn_relu"], data, width=8, blocks_per_stage=2)
    block = model[2]
    assert torch.count_nonzero(block.act2.layer.weight) == 0 and torch.count_nonzero(block.act1.layer.weight) == 8
    flat = get_dataset("digits")(seed=0)
    with pytest.raises(ValueError, match="image classification dataset"):
        get_arch("resnet")(space, space.seeds()["gn_relu"], flat)
