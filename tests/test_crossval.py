"""Out-of-fold predictions find wrong labels, and near-duplicates cannot vouch for each other."""

import numpy as np

from headstart.evaluation.crossval import doubtful, out_of_fold


def clusters(n_per_class: int = 40, dim: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (2, dim))
    labels = np.repeat([0, 1], n_per_class)
    return centres[labels] + rng.normal(0, 1, (len(labels), dim)), labels


def test_wrong_labels_come_first():
    features, labels = clusters()
    wrong = np.array([3, 17, 55])
    labels[wrong] = 1 - labels[wrong]
    probabilities = out_of_fold(features, labels, np.arange(len(labels)), 2)
    assert probabilities.shape == (80, 2) and np.allclose(probabilities.sum(1), 1)
    assert set(doubtful(probabilities, labels)[:3]) == set(wrong)


def test_near_duplicates_stay_in_one_fold():
    """A burst of 20 frames of one photo, all mislabelled: with their group kept whole, no copy is
    trained on while another is judged, so all are caught; split freely they vouch for each other."""
    features, labels = clusters()
    copies = np.arange(80, 100)
    features = np.concatenate([features, np.repeat(features[:1], 20, axis=0) + 1e-3])
    labels = np.concatenate([labels, np.ones(20, dtype=labels.dtype)])  # a class-0 photo labelled 1
    grouped = np.arange(len(labels))
    grouped[copies] = 80
    caught = set(doubtful(out_of_fold(features, labels, grouped, 2), labels))
    assert set(copies) <= caught
    free = set(doubtful(out_of_fold(features, labels, np.arange(len(labels)), 2), labels))
    assert not set(copies) & free


def test_too_little_data_is_no_answer():
    features, labels = clusters(n_per_class=1)
    assert out_of_fold(features, labels, np.arange(2), 2) is None  # one image per class
    features, labels = clusters()
    assert out_of_fold(features, labels, np.zeros(80, dtype=int), 2) is None  # one group: nothing to hold out
