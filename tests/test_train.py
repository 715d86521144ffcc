"""headstart.train end to end on real and generated images."""

import headstart


def test_same_seed_same_data_gives_identical_metrics(small_hymenoptera):
    a = headstart.train(small_hymenoptera, seed=3)
    b = headstart.train(small_hymenoptera, seed=3)
    assert a.metrics == b.metrics and a.record.history.val_loss == b.record.history.val_loss
    assert b.record.timings.images_computed == 0  # second run: every feature from the cache


def test_learns_separable_classes(colour_folder):
    clf = headstart.train(colour_folder, val_fraction=0.2, test_fraction=0.2)
    assert clf.metrics.accuracy == 1.0
    assert clf.record.evaluated_on == "test" and clf.metrics.count == 6
