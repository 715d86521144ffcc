"""Figures stay legible as classes multiply."""

from itertools import combinations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from headstart.evaluation.contact_sheet import THUMB, Section, Tile, contact_sheet
from headstart.evaluation.metrics import compute_metrics
from headstart.evaluation.plots import plot_confusion, principal_components
from headstart.preprocessing import Preprocessing

from .helpers import make_image


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


def test_principal_components_match_a_full_svd():
    rng = np.random.default_rng(1)
    scales = np.r_[10.0, 6.0, np.linspace(2, 0.1, 398)]  # two clear axes, as backbone features have
    x = rng.normal(size=(600, 400)) * scales
    x -= x.mean(0)
    xy, explained = principal_components(x, 2)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    reference = x @ vt[:2].T
    assert np.allclose(np.abs(xy), np.abs(reference), atol=1e-3 * np.abs(reference).max())  # a plot's accuracy
    assert np.allclose(explained, s[:2] ** 2 / np.sum(s**2), atol=1e-6)


def test_contact_sheet_lays_out_every_image_and_marks_unreadable_ones(tmp_path):
    good = [make_image(tmp_path / f"{i}.png", colour=(200, 30 * i, 30), size=(300, 200)) for i in range(7)]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    sections = [
        Section("first", "#d62728", [Tile(p, ["true: a", "pred 90%: b"]) for p in good]),
        Section("second", "#2ca02c", [Tile(broken, ["true: c"])]),
        Section("empty", "#222222", []),
    ]
    sheet = contact_sheet(sections, Preprocessing(), columns=6)
    assert sheet.width == 8 + 6 * (THUMB + 8)
    pixels = np.asarray(sheet)
    first_tile = pixels[8 + 24 : 8 + 24 + THUMB, 8 : 8 + THUMB]
    assert np.abs(first_tile.mean((0, 1)) - (200, 0, 30)).max() < 12  # the image itself (noisy), centre-cropped
    seventh_row = 8 + 24 + (THUMB + 8 + 2 * 15)  # seven tiles at six a row: a second row
    seventh = pixels[seventh_row : seventh_row + THUMB, 8 : 8 + THUMB]
    assert np.abs(seventh.mean((0, 1)) - (200, 180, 30)).max() < 12
    assert sheet.height > seventh_row + THUMB  # and the other sections below it
