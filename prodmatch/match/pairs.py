"""CandidatePairs: the value that travels between the matching stages.

Candidate generation (`candidates.py`) makes it, signals add named columns to it, scoring (`scoring.py`) reads
those columns, assignment (`assign.py`) filters and ranks it, and `store.runs` writes it into
`prodmatch.matches`. Columns are named (``fused_similarity``, ``image_similarity``, ...), never positions, so a
new signal is one more entry in `signals`, not a wider array that every stage must know the layout of.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CandidatePairs:
    """Candidate (source product, target product) pairs as parallel arrays.

    `score` is what the run decides on (a cosine for a cosine-only run); `signals` holds every named column
    (float32, NaN where a product lacks what the signal needs); `ranks` is set by assignment (1 = best per source).
    """

    sources: np.ndarray
    targets: np.ndarray
    score: np.ndarray
    signals: dict[str, np.ndarray] = field(default_factory=dict)
    ranks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sources)

    def take(self, keep: np.ndarray) -> CandidatePairs:
        """The pairs selected by a boolean mask or an index array, every column alike."""
        return CandidatePairs(
            self.sources[keep],
            self.targets[keep],
            self.score[keep],
            {name: column[keep] for name, column in self.signals.items()},
            None if self.ranks is None else self.ranks[keep],
        )

    def signal(self, name: str) -> np.ndarray:
        """One named column; all-NaN when no stage computed it."""
        if name in self.signals:
            return self.signals[name]
        return np.full(len(self), np.nan, dtype=np.float32)
