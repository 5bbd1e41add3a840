"""Dataset, TensorDataset, samplers, DataLoader and default_collate."""

import numpy as np
import pytest

import jitgrad
from jitgrad.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    SequentialSampler,
    TensorDataset,
    default_collate,
    random_split,
)


def _dataset(n=10):
    return TensorDataset(jitgrad.arange(n), jitgrad.arange(n * 2, dtype=jitgrad.float32).view(n, 2))


def test_tensor_dataset():
    ds = _dataset()
    assert len(ds) == 10
    i, x = ds[3]
    assert i.item() == 3 and x.tolist() == [6.0, 7.0]
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(jitgrad.zeros(3), jitgrad.zeros(4))


def test_batches_in_order_and_drop_last():
    batches = list(DataLoader(_dataset(), batch_size=4))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[0][1].shape == (4, 2) and batches[0][1].dtype == jitgrad.float32
    loader = DataLoader(_dataset(), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(b[0]) for b in loader] == [4, 4]
    assert len(DataLoader(_dataset(), batch_size=4)) == 3


def test_shuffle_is_a_reproducible_permutation():
    def order(seed):
        loader = DataLoader(_dataset(), batch_size=3, shuffle=True,
                            generator=np.random.default_rng(seed))
        return [[i for b in loader for i in b[0].tolist()] for _ in range(2)]

    first, second = order(0)
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert first != second  # a new permutation each epoch
    assert order(0) == [first, second]
    jitgrad.manual_seed(5)
    a = [b[0].tolist() for b in DataLoader(_dataset(), batch_size=5, shuffle=True)]
    jitgrad.manual_seed(5)
    b = [b[0].tolist() for b in DataLoader(_dataset(), batch_size=5, shuffle=True)]
    assert a == b


class Squares(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"x": float(i), "y": i * i, "name": f"s{i}", "v": np.full(2, i, np.float32)}


def test_default_collate_of_dicts_numbers_strings_arrays():
    batch = next(iter(DataLoader(Squares(), batch_size=3)))
    assert batch["x"].dtype == jitgrad.float64 and batch["x"].tolist() == [0.0, 1.0, 2.0]
    assert batch["y"].dtype == jitgrad.int64 and batch["y"].tolist() == [0, 1, 4]
    assert batch["name"] == ["s0", "s1", "s2"]
    assert batch["v"].shape == (3, 2) and batch["v"].dtype == jitgrad.float32


def test_collate_matches_torch_structure():
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate

    samples = [(np.float32(1.5) * i, i, (i, [i, 2.0 * i])) for i in range(3)]
    ours = default_collate([(jitgrad.tensor(a), b, c) for a, b, c in samples])
    theirs = torch_collate([(torch.tensor(a), b, c) for a, b, c in samples])
    assert ours[0].tolist() == theirs[0].tolist()
    assert ours[1].tolist() == theirs[1].tolist()
    assert ours[2][0].tolist() == theirs[2][0].tolist()
    assert [t.tolist() for t in ours[2][1]] == [t.tolist() for t in theirs[2][1]]


def test_unbatched_and_custom_samplers():
    ds = _dataset(4)
    assert [s[0].item() for s in DataLoader(ds, batch_size=None)] == [0, 1, 2, 3]
    sampler = BatchSampler(SequentialSampler(ds), 3, drop_last=False)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=lambda b: [s[0].item() for s in b])
    assert list(loader) == [[0, 1, 2], [3]]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        DataLoader(ds, batch_size=0)


def test_random_split():
    a, b = random_split(_dataset(), [7, 3], generator=np.random.default_rng(0))
    assert len(a) == 7 and len(b) == 3
    seen = sorted(a[i][0].item() for i in range(7)) + sorted(b[i][0].item() for i in range(3))
    assert sorted(seen) == list(range(10))
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(_dataset(), [5, 6])
