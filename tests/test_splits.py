"""Split ranges and the search's refusal of a holdout that overlaps training."""
import pytest
from hypothesis import assume, given, settings, strategies as st

from nas_jax.data.splits import shared_examples, split_ranges
from nas_jax.pruning.search.config import default_config as search_config
from nas_jax.pruning.search.context import holdout_batches
from nas_jax.train.config import load_config

SIZES = {"train": 500, "validation": 120}
bound = st.one_of(st.none(), st.integers(-600, 600))


def spec(name, start, stop):
    if start is None and stop is None:
        return name  # TFDS has no 'name[:]'
    return f"{name}[{'' if start is None else start}:{'' if stop is None else stop}]"


def indices(name, start, stop):
    return {(name, i) for i in range(SIZES[name])[start:stop]}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(SIZES)), bound, bound), min_size=1, max_size=3),
       st.lists(st.tuples(st.sampled_from(sorted(SIZES)), bound, bound), min_size=1, max_size=3),
       st.integers(0, 700))
def test_shared_examples_is_the_intersection_of_python_slices(train, holdout, first):
    """Against Python's own slicing of range(size), reading the holdout's parts in order."""
    parts = train + holdout
    assume(all(range(SIZES[n])[a:b] for n, a, b in parts))  # TFDS refuses an empty slice
    assume(all(b is None or abs(b) <= SIZES[n] for n, *bounds in parts for b in bounds))  # and one out of range
    ordered = [x for part in holdout for x in sorted(indices(*part))]
    trained = set().union(*(indices(*part) for part in train))
    want = sum(x in trained for x in (ordered[:first] if first else ordered))  # a part read twice counts twice
    got = shared_examples("+".join(spec(*p) for p in train), "+".join(spec(*p) for p in holdout),
                          SIZES.__getitem__, first)
    assert got == want


def test_split_ranges_reads_percent_and_plain_splits():
    assert split_ranges("train[:10%]+validation", SIZES.__getitem__) == [("train", 0, 50), ("validation", 0, 120)]
    with pytest.raises(ValueError, match="is not a split"):
        split_ranges("train[10:", SIZES.__getitem__)
    with pytest.raises(ValueError, match="is not a split"):
        split_ranges("train[:501]", SIZES.__getitem__)


def test_search_refuses_a_holdout_the_pruningnet_trained_on():
    config = load_config("experiments/configs/prune_digits.py")
    search = search_config().search
    search.holdout_split, search.holdout_examples = "train", 100
    with pytest.raises(ValueError, match="shares 100 examples with the split the PruningNet trained on"):
        holdout_batches(config, search)
    search.holdout_split, search.holdout_examples = "validation", 100
    assert len(holdout_batches(config, search)["label"].reshape(-1)) >= 100
