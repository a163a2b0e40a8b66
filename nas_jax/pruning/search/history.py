"""Every candidate a search has evaluated, in order, and the best one within budget.

Fields, one entry per evaluated candidate (N in all): ``choices`` [N, P] grid indices,
``accuracy`` [N] held-out top-1, ``score`` [N] what the searcher maximised (accuracy, less
a budget penalty), ``flops_ratio`` / ``params_ratio`` [N] fractions of the full model,
``iteration`` [N] the search iteration that proposed it. Stored as JSON lists.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List

import numpy as np

FIELDS = ("choices", "accuracy", "score", "flops_ratio", "params_ratio", "iteration")


@dataclasses.dataclass
class History:
    num_groups: int
    columns: Dict[str, List] = dataclasses.field(default_factory=lambda: {f: [] for f in FIELDS})

    def __len__(self) -> int:
        return len(self.columns["accuracy"])

    def extend(self, **values) -> None:
        """Appends K entries: every field of ``FIELDS`` as an array with K rows."""
        for field in FIELDS:
            self.columns[field].extend(np.asarray(values[field]).tolist())

    def array(self, field: str) -> np.ndarray:
        if field == "choices":
            return np.asarray(self.columns["choices"], np.int64).reshape(-1, self.num_groups)
        return np.asarray(self.columns[field])

    def seen(self) -> set:
        """The evaluated candidates as tuples."""
        return {tuple(c) for c in self.columns["choices"]}

    def best_index(self, fits: np.ndarray) -> int:
        """The most accurate candidate among those that ``fits`` ([N] bool), ties to the
        cheaper in FLOPs, then the earlier. Raises ``RuntimeError`` when none fits."""
        candidates = np.flatnonzero(fits)
        if candidates.size == 0:
            raise RuntimeError("no evaluated candidate meets the budget (raise the budget penalty)")
        accuracy, flops = self.array("accuracy")[candidates], self.array("flops_ratio")[candidates]
        order = np.lexsort((candidates, flops, -accuracy))
        return int(candidates[order[0]])

    def to_json(self) -> dict:
        return {"num_groups": self.num_groups, "columns": self.columns}

    @classmethod
    def from_json(cls, doc: dict) -> "History":
        return cls(doc["num_groups"], {f: list(doc["columns"][f]) for f in FIELDS})
