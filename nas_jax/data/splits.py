"""Which examples a split names, so that a search's held-out examples can be checked to be
unseen in training.

Splits use the TFDS syntax: ``'train'``, ``'train[10000:]'``, ``'train[:10%]'``,
``'train[:5000]+validation'``; positions are example indices of the base split, as
``tfds.data_source`` reads them (the embedded datasets take plain names only).
"""
from __future__ import annotations

import types
from typing import Callable, Dict, List, Tuple


def split_ranges(split: str, num_examples: Callable[[str], int]) -> List[Tuple[str, int, int]]:
    """``[(base split, start, stop), ...]`` in reading order; ``num_examples(base)`` gives a
    base split's size (asked only for the bases ``split`` names)."""
    import tensorflow_datasets as tfds

    # what ReadInstruction.to_absolute reads: sizes[base].num_examples
    sizes = {base: types.SimpleNamespace(num_examples=num_examples(base))
             for base in {part.split("[")[0].strip() for part in split.split("+")}}
    try:
        absolute = tfds.core.ReadInstruction.from_spec(split).to_absolute(sizes)
    except (ValueError, AssertionError) as e:
        raise ValueError(f"{split!r} is not a split: {e}") from e
    return [(a.splitname, a.from_ or 0, sizes[a.splitname].num_examples if a.to is None else a.to) for a in absolute]


def shared_examples(train_split: str, holdout_split: str, num_examples: Callable[[str], int],
                    holdout_examples: int = 0) -> int:
    """How many examples of ``holdout_split`` (only its first ``holdout_examples`` if > 0)
    are also in ``train_split`` (a holdout part read twice counts twice)."""
    trained: Dict[str, List[Tuple[int, int]]] = {}  # per base split, disjoint ranges
    for name, start, stop in sorted(split_ranges(train_split, num_examples)):
        ranges = trained.setdefault(name, [])
        if ranges and start <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(stop, ranges[-1][1]))
        else:
            ranges.append((start, stop))
    shared, left = 0, holdout_examples if holdout_examples > 0 else None
    for name, start, stop in split_ranges(holdout_split, num_examples):
        if left is not None:
            stop, left = min(stop, start + left), left - min(stop - start, left)
        shared += sum(max(0, min(stop, b) - max(start, a)) for a, b in trained.get(name, []))
    return shared
