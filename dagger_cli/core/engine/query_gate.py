"""Which student-acted steps the expert labels when `algorithm.dagger.query` is `gated`.

The student scores its own uncertainty where it acts (`act_with_uncertainty`: an MLP's ensemble-head disagreement,
π₀'s spread of action chunks sampled from one prefix with different noise). A step is labelled where its score
exceeds `threshold` (EnsembleDAgger's and SafeDAgger's rule) and, with a `budget` of labels per collection, where it
is among the most uncertain the collection has seen so far, at the rate that would spend what is left of the budget
on the student-acted steps still to come (ThriftyDAgger's quantile threshold, kept within one collection).

The gate keeps no state from one collection to the next: a collection's labels depend only on its own scores, so a
resumed run repeats what an uninterrupted one would do.
"""

from __future__ import annotations

import numpy as np


class QueryGate:
    def __init__(self, threshold: float | None = None, budget: int | None = None):
        if threshold is None and budget is None:
            raise ValueError("a query gate needs a threshold or a budget")
        self.threshold = threshold
        self.budget = budget
        self.start()

    def start(self) -> None:
        """A new collection: nothing spent, no scores seen."""
        self.spent = 0
        self.scores_seen: list[np.ndarray] = []

    def choose(self, scores: np.ndarray, student_steps_to_come: float) -> np.ndarray:
        """Which of this step's student-acted rows (their `scores`) the expert labels. `student_steps_to_come`:
        how many student-acted rows the collection expects from this step on, this step's included."""
        scores = np.asarray(scores, dtype=np.float64)
        picks = np.ones(len(scores), dtype=bool)
        if self.threshold is not None:
            picks &= scores > self.threshold
        if self.budget is not None:
            self.scores_seen.append(scores)
            left = self.budget - self.spent
            if left <= 0:
                return np.zeros(len(scores), dtype=bool)
            rate = min(1.0, left / max(student_steps_to_come, 1.0))
            if rate < 1.0:
                picks &= scores >= np.quantile(np.concatenate(self.scores_seen), 1.0 - rate)
            if picks.sum() > left:  # the most uncertain of them, the earlier row first on ties
                order = np.argsort(-scores, kind="stable")
                picks = np.isin(np.arange(len(scores)), order[picks[order]][:left])
            self.spent += int(picks.sum())
        return picks
