"""The one scoring path: which map each metric gets, and the trivial maps scored with a model."""

import numpy as np
import torch

from rvi.scoring.controls import edge_map, image_map
from rvi.scoring.records import ScoreKey
from rvi.metrics.relative import deletion_gain, infidelity_unexplained
from rvi.attribution.saliency import explain
from rvi.scoring.cell import score_maps_with_model, score_model


def test_signed_map_metrics_get_signed_maps_on_the_scored_images_only(lenet, batch):
    images, labels = batch
    scores, attributions = score_model(
        lenet, images, references={"clean": images}, methods=("guided_backprop",),
        metrics=("infidelity_unexplained", "deletion_gain"), labels=labels, seed=4,
        faithfulness_n=6)
    signed = explain(lenet, images[:6], labels[:6], absolute=False).maps
    assert bool((signed < 0).any())  # the sign matters here
    expected = infidelity_unexplained(lenet, images[:6], signed, labels[:6], seed=4)
    got = scores[ScoreKey("guided_backprop", "infidelity_unexplained", "clean")]
    np.testing.assert_array_equal(got[:6], expected.numpy().astype(np.float32))
    assert np.isnan(got[6:]).all()
    gain = deletion_gain(lenet, images[:6], attributions["guided_backprop"].maps[:6], labels[:6],
                         seed=4)  # absolute maps
    np.testing.assert_array_equal(scores[ScoreKey("guided_backprop", "deletion_gain", "clean")][:6],
                                  gain.numpy().astype(np.float32))


def test_trivial_maps_are_scored_with_the_model_on_decided_faithfulness_metrics(lenet, batch):
    images, labels = batch
    maps = {"image": image_map(images), "edge": edge_map(images)}
    metrics = ("cosine", "deletion", "deletion_gain", "infidelity_unexplained", "sensitivity_max")
    scores = score_maps_with_model(lenet, maps, images, labels, metrics, seed=1, faithfulness_n=4)
    # cleanliness needs no model; raw deletion is descriptive; sensitivity_max remakes maps
    assert set(scores) == {ScoreKey(e, m, "clean") for e in maps
                           for m in ("deletion_gain", "infidelity_unexplained")}
    expected = deletion_gain(lenet, images[:4], maps["edge"][:4], labels[:4], seed=1)
    got = scores[ScoreKey("edge", "deletion_gain", "clean")]
    np.testing.assert_array_equal(got[:4], expected.numpy().astype(np.float32))
    assert np.isnan(got[4:]).all()
    assert not torch.equal(torch.from_numpy(got[:4]),
                           torch.from_numpy(scores[ScoreKey("image", "deletion_gain", "clean")][:4]))
