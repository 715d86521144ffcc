"""`headstart compare`: the same split for every backbone, honest intervals, a sensible pick."""

import json

import numpy as np
import pytest

import headstart
from headstart.errors import HeadstartError
from headstart.evaluation.metrics import wilson
from headstart.training.compare import Candidate, mark_pareto, mcnemar, recommend
from tests.test_cli import headstart_cli


def candidate(name, accuracy, latency, n=100):
    """Right on the first accuracy·n images: a more accurate candidate gets a superset right."""
    right = round(accuracy * n)
    low, high = wilson(right, n)
    return Candidate(name, accuracy, low, high, accuracy, latency, 10.0, 0.1, correct=[i < right for i in range(n)])


def test_wilson_interval_matches_the_textbook_and_stays_inside_0_1():
    low, high = wilson(81, 100)  # Wilson (1927): 0.7222–0.8749 for 81/100
    assert (round(low, 4), round(high, 4)) == (0.7222, 0.8749)
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(10, 10)[0] > 0.6
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12)


def test_mcnemar_matches_the_exact_binomial_test():
    a = np.array([True] * 10 + [False] * 2)
    b = np.array([False] * 10 + [True] * 2)
    assert mcnemar(a, b) == pytest.approx(0.0386, abs=1e-4)  # 10 vs 2 discordant: scipy's binomtest
    assert mcnemar(a, a) == 1.0
    # 95.1% vs 97.0% of 987 images overlap as intervals, yet 19 discordant pairs one way is no chance:
    better, worse = np.ones(987, bool), np.ones(987, bool)
    worse[:19] = False
    assert mcnemar(better, worse) < 1e-4


def test_pareto_front_and_recommendation():
    fast = candidate("fast", 0.90, 5)
    slow_better = candidate("slow", 0.93, 20)
    dominated = candidate("dominated", 0.89, 10)
    mark_pareto(cands := [fast, slow_better, dominated])
    assert [c.pareto for c in cands] == [True, True, False]
    assert recommend(cands).backbone == "fast"  # 90 vs 93 of 100, 3 discordant images: chance, so the faster one
    clear = candidate("clear", 0.99, 20, n=2000)
    assert recommend([candidate("fast", 0.90, 5, n=2000), clear]).backbone == "clear"


def test_compare_trains_every_candidate_on_one_split(small_hymenoptera):
    result = headstart.compare(small_hymenoptera, ["mobilenet_v2", "efficientnet_lite0"], quiet=True)
    assert [c.label for c in result.candidates] == [
        "mobilenet_v2",
        "efficientnet_lite0",
        "mobilenet_v2 +flip",
        "efficientnet_lite0 +flip",
    ]
    assert result.split == "val" and result.images == 12
    plain, flip = result.candidates[0], result.candidates[2]
    # The mirror view is a second pass, and is measured (not assumed). Batched with the first it costs
    # 1.3-2x on 2 cores, so only "more" is asserted: a 1.3x bound failed CI once (13.7 vs 10.8 ms).
    assert flip.latency_ms > plain.latency_ms
    for c in result.candidates:
        assert 0.5 <= c.accuracy <= 1 and c.low <= c.accuracy <= c.high
        assert c.latency_ms > 0 and c.size_mb > 10
        assert np.isclose(c.accuracy * 12, round(c.accuracy * 12))  # a count of the 12 images
    assert result.recommended in {"mobilenet_v2", "efficientnet_lite0"} and result.recommended_tta in {"none", "flip"}
    assert any(c.pareto for c in result.candidates)


def test_compare_budget_starts_nothing_after_it_is_spent(small_hymenoptera):
    result = headstart.compare(
        small_hymenoptera, ["mobilenet_v2", "mobilenet_v2+efficientnet_lite0"], tta=["none"], budget=0, quiet=True
    )
    assert [c.label for c in result.candidates] == ["mobilenet_v2"]  # the first always runs
    assert result.skipped == ["mobilenet_v2+efficientnet_lite0"] and result.recommended == "mobilenet_v2"


def test_cli_compare_json_and_errors(small_hymenoptera):
    one = ("--backbones", "mobilenet_v2", "--tta", "none")
    result = headstart_cli("compare", small_hymenoptera, *one, "--format", "json")
    report = json.loads(result.stdout)
    assert report["recommended"] == "mobilenet_v2" and report["candidates"][0]["pareto"] is True
    table = headstart_cli("compare", small_hymenoptera, *one, "--quiet").stdout
    assert "Recommended: mobilenet_v2," in table and "95% interval" in table
    assert "headstart train" in table and "--backbone mobilenet_v2" in table
    bad = headstart_cli("compare", small_hymenoptera, "--backbones", "resnet9000", check=False)
    assert bad.returncode == 2 and "unknown backbone 'resnet9000'" in bad.stderr
    with pytest.raises(HeadstartError, match="unknown backbone"):
        headstart.compare(small_hymenoptera, ["nope"])


def test_train_with_backbone_auto_trains_the_recommended_one(small_hymenoptera, tmp_path):
    result = headstart_cli("train", small_hymenoptera, "--backbone", "auto", "--out", tmp_path / "m", "--no-report")
    clf = headstart.load(tmp_path / "m")
    chosen = clf.hparams.backbone
    comparison = headstart.compare(small_hymenoptera, quiet=True)
    assert (chosen, clf.hparams.tta) == (comparison.recommended, comparison.recommended_tta)
    assert f"Backbone: {chosen}" in result.stdout and "as `headstart compare` recommends" in result.stdout
    assert clf.spec.name == chosen and clf.tta == clf.hparams.tta
    assert len(comparison.candidates) == 10  # 4 backbones and the ensemble, with and without flip
