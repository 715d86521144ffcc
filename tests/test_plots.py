"""Figures stay legible as classes multiply."""

from itertools import combinations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from headstart.evaluation.metrics import compute_metrics
from headstart.evaluation.plots import plot_confusion


def test_forty_class_confusion_matrix_keeps_labels_apart():
    rng = np.random.default_rng(0)
    classes = [f"class {i:02d} with a rather long descriptive name" for i in range(40)]
    y = rng.integers(0, 40, 2000)
    probs = rng.dirichlet(np.ones(40), 2000)
    probs[np.arange(2000), y] += 0.5
    fig = plot_confusion(compute_metrics(y, probs, classes))
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        boxes = [t.get_window_extent(renderer) for t in labels if t.get_text()]
        assert len(boxes) == 40
        overlaps = [(a, b) for a, b in combinations(range(40), 2) if boxes[a].overlaps(boxes[b])]
        assert overlaps == []
    assert all(t.get_fontsize() >= 6 for t in ax.get_xticklabels())
