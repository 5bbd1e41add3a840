"""``DataLoader`` and ``default_collate``."""

import collections.abc
import numbers

import numpy as np

import jitgrad
from jitgrad.tensor import Tensor
from jitgrad.utils.data.dataset import TensorDataset
from jitgrad.utils.data.sampler import BatchSampler, RandomSampler, SequentialSampler

__all__ = ["DataLoader", "default_collate"]


def default_collate(batch):
    """Merge a list of samples into a batch: tensors/arrays stack along a new dim 0, numbers
    become a tensor, and tuples, lists and dicts are collated element by element.

    Example::

        >>> import jitgrad
        >>> from jitgrad.utils.data import default_collate
        >>> default_collate([(jitgrad.tensor([1., 2.]), 0), (jitgrad.tensor([3., 4.]), 1)])
        [tensor([[1., 2.],
                [3., 4.]]), tensor([0, 1])]
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        return jitgrad.stack(list(batch), 0)
    if isinstance(elem, np.ndarray):
        return jitgrad.tensor(np.stack(batch))
    if isinstance(elem, (bool, np.bool_)):
        return jitgrad.tensor(list(batch), dtype=jitgrad.bool)
    if isinstance(elem, numbers.Integral):
        return jitgrad.tensor(list(batch), dtype=jitgrad.int64)
    if isinstance(elem, numbers.Real):
        return jitgrad.tensor(list(batch), dtype=jitgrad.float64)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(s) != len(elem) for s in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(list(samples)) for samples in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts "
                    f"or lists; found {type(elem)}")


class DataLoader:
    """Iterates a dataset in (optionally shuffled) batches, collated with ``collate_fn``.

    Args:
        dataset: a map-style dataset (``__getitem__`` and ``__len__``).
        batch_size: samples per batch (None yields unbatched samples).
        shuffle: reshuffle every epoch, drawing from ``generator`` or jitgrad's generator.
        sampler / batch_sampler: custom index orders (exclusive with shuffle / batch_size).
        collate_fn: merges a list of samples into a batch (``default_collate``).
        drop_last: drop the last incomplete batch.
        generator: a numpy Generator (``numpy.random.default_rng(seed)``) for reproducible order.

    Example::

        >>> import jitgrad
        >>> from jitgrad.utils.data import DataLoader, TensorDataset
        >>> ds = TensorDataset(jitgrad.arange(5))
        >>> [b[0].tolist() for b in DataLoader(ds, batch_size=2)]
        [[0, 1], [2, 3], [4]]
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False,
                 generator=None):
        if num_workers != 0:
            raise ValueError("jitgrad's DataLoader loads in the main process: use num_workers=0")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None
                                          or drop_last):
            raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                             "shuffle, sampler, and drop_last")
        if sampler is None:
            sampler = (RandomSampler(dataset, generator=generator) if shuffle
                       else SequentialSampler(dataset))
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset = dataset
        self.batch_size = None if batch_sampler is not None and batch_size is None else batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        self.num_workers = num_workers
        self.collate_fn = collate_fn or (default_collate if batch_sampler is not None
                                         else (lambda x: x))

    def __iter__(self):
        if self.batch_sampler is None:
            for idx in self.sampler:
                yield self.collate_fn(self.dataset[idx])
            return
        fast = isinstance(self.dataset, TensorDataset) and self.collate_fn is default_collate
        for indices in self.batch_sampler:
            if fast:  # one gather per tensor instead of a getitem per sample and a stack
                index = jitgrad.tensor(indices, dtype=jitgrad.int64)
                yield [t[index] for t in self.dataset.tensors]
            else:
                yield self.collate_fn([self.dataset[i] for i in indices])

    def __len__(self):
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)
