"""Datasets, samplers and ``DataLoader``."""

from jitgrad.utils.data.dataloader import DataLoader, default_collate
from jitgrad.utils.data.dataset import Dataset, Subset, TensorDataset, random_split
from jitgrad.utils.data.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["BatchSampler", "DataLoader", "Dataset", "RandomSampler", "Sampler",
           "SequentialSampler", "Subset", "TensorDataset", "default_collate", "random_split"]
