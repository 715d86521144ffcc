"""Early stopping on validation loss, shared by every stage (torch-free: the lbfgs head uses it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_IMPROVEMENT = 1e-6  # a validation loss must drop by more than this to count as better


@dataclass
class EarlyStopping:
    """Stop after `patience` epochs without a lower validation loss."""

    patience: int
    best_loss: float = math.inf
    stale: int = 0

    def update(self, loss: float) -> bool:
        """Record an epoch's validation loss; True when it is the best so far."""
        if loss < self.best_loss - MIN_IMPROVEMENT:
            self.best_loss, self.stale = loss, 0
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        """`patience` updates in a row without a lower loss."""
        return self.stale >= self.patience
