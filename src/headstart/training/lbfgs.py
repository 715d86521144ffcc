"""L-BFGS (Nocedal & Wright 2006, algorithm 7.4) for the head's smooth convex objectives.

scipy.optimize has the reference implementation, but importing it costs 0.4 s here (it pulls in
scipy.linalg), a third of a whole warm-cache `headstart train` (bench/train_speed.py); a test
checks that both reach the same minimum. Float32 throughout: the objectives are float32 matrix
products, and their noise floor is far below the tolerances used.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]  # x -> (value, gradient)


@dataclass
class Minimum:
    """Where L-BFGS stopped: the point, its value, the iterations, whether it converged."""

    x: np.ndarray
    value: float
    iterations: int
    converged: bool  # a tolerance was met (not max_iterations)


def minimize_lbfgs(
    objective: Objective,
    x0: np.ndarray,
    max_iterations: int = 500,
    memory: int = 10,
    gtol: float = 1e-4,
    ftol: float = 1e-6,
) -> Minimum:
    """Minimise `objective` from `x0`: stops when the largest gradient component is at most `gtol`
    or a step lowers the value by at most `ftol` relative to it (scipy's L-BFGS-B criteria).

    Example:
        >>> target = np.array([1.0, -2.0], np.float32)
        >>> m = minimize_lbfgs(lambda x: (float(((x - target) ** 2).sum()), 2 * (x - target)), np.zeros(2, np.float32))
        >>> np.round(m.x, 4).tolist(), m.converged
        ([1.0, -2.0], True)
    """
    x = np.array(x0, dtype=np.float32)
    value, grad = objective(x)
    steps: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=memory)  # (s, y, 1 / s.y)
    for iteration in range(1, max_iterations + 1):
        if np.abs(grad).max() <= gtol:
            return Minimum(x, value, iteration - 1, True)
        direction = _direction(grad, steps)
        slope = float(grad @ direction)
        if slope >= 0:  # curvature pairs gone stale: restart from steepest descent
            steps.clear()
            direction, slope = _direction(grad, steps), -float(grad @ grad)
        t = 1.0
        while True:  # backtracking until the Armijo condition holds
            x_new = x + np.float32(t) * direction
            new_value, new_grad = objective(x_new)
            if new_value <= value + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        s, y = x_new - x, new_grad - grad
        sy = float(s @ y)
        if sy > 1e-10:  # keep only pairs that keep the inverse-Hessian estimate positive definite
            steps.append((s, y, 1.0 / sy))
        stalled = value - new_value <= ftol * max(abs(value), abs(new_value), 1.0)
        x, value, grad = x_new, new_value, new_grad
        if stalled:
            return Minimum(x, value, iteration, True)
    return Minimum(x, value, max_iterations, False)


def _direction(grad: np.ndarray, steps) -> np.ndarray:
    """-H grad by the two-loop recursion over the stored curvature pairs."""
    q = -grad
    if not steps:
        return q / max(1.0, float(np.linalg.norm(grad)))  # no curvature yet: a step of length at most 1
    alphas = []
    for s, y, rho in reversed(steps):
        alpha = rho * float(s @ q)
        alphas.append(alpha)
        q = q - np.float32(alpha) * y
    s, y, _ = steps[-1]
    q = q * np.float32(float(s @ y) / float(y @ y))
    for (s, y, rho), alpha in zip(steps, reversed(alphas)):
        q = q + np.float32(alpha - rho * float(y @ q)) * s
    return q
