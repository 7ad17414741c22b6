"""Repeated model queries inside one scoring pass are answered once (rvi._core.reuse), with results
equal to those computed without reuse."""

import torch

from rvi._core.reuse import reuse_model_queries
from rvi.metrics.faithfulness import CURVE_STEPS, INFIDELITY_DRAWS, deletion
from rvi.metrics.relative import deletion_gain, infidelity_unexplained, lerf_morf


def count_images(model) -> list:
    """A one-element list counting the images ``model`` is called on."""
    seen = [0]
    model.register_forward_pre_hook(lambda module, args: seen.__setitem__(0, seen[0] + len(args[0])))
    return seen


def three_scores(model, images, maps, labels) -> list:
    return [deletion(model, images, maps, labels),
            deletion_gain(model, images, maps, labels, seed=3),
            lerf_morf(model, images, maps, labels)]


def test_shared_deletion_curves_are_computed_once_with_equal_scores(lenet, batch):
    images, labels = batch
    maps = torch.rand(images.shape[0], 1, *images.shape[2:], generator=torch.Generator().manual_seed(0))
    seen = count_images(lenet)
    plain = three_scores(lenet, images, maps, labels)
    per_curve = len(images) * (CURVE_STEPS + 1)
    assert seen[0] == 5 * per_curve  # map order three times, random order, least relevant first
    seen[0] = 0
    with reuse_model_queries():
        reused = three_scores(lenet, images, maps, labels)
        assert seen[0] == 3 * per_curve
        three_scores(lenet, images, maps.clone(), labels)  # equal content, another tensor
        assert seen[0] == 3 * per_curve
    for a, b in zip(plain, reused):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    three_scores(lenet, images, maps, labels)  # the store ended with the block
    assert seen[0] == 8 * per_curve


def test_changed_weights_or_inputs_are_not_answered_from_the_store(lenet, batch):
    images, labels = batch
    maps = images.clone()
    with reuse_model_queries():
        before = deletion(lenet, images, maps, labels)
        with torch.no_grad():
            lenet[0].weight.mul_(-1.0)
        after = deletion(lenet, images, maps, labels)
        shifted = deletion(lenet, images, maps.flip(-1), labels)
    torch.testing.assert_close(after, deletion(lenet, images, maps, labels), rtol=0, atol=0)
    torch.testing.assert_close(shifted, deletion(lenet, images, maps.flip(-1), labels), rtol=0, atol=0)
    assert not torch.equal(before, after)


def test_the_logit_changes_of_unexplained_infidelity_are_shared_between_maps(lenet, batch):
    images, labels = batch
    first, second = images.clone(), images.flip(-1)
    plain = [infidelity_unexplained(lenet, images, m, labels, seed=2) for m in (first, second)]
    seen = count_images(lenet)
    with reuse_model_queries():
        reused = [infidelity_unexplained(lenet, images, m, labels, seed=2) for m in (first, second)]
    # each infidelity call checks the output size on one image, then Captum calls the model on
    # the originals and INFIDELITY_DRAWS copies of each: three calls (two maps, one zero map), not four
    assert seen[0] == 3 * (1 + len(images) * (INFIDELITY_DRAWS + 1))
    for a, b in zip(plain, reused):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
