"""Each model's own baselines for faithfulness and the randomization test, on the mnist-5k pair of
``rvi bench`` (issue "calibrated verdicts"): numbers that a raw cross-model comparison mixes in.

For the natural and the robust LeNet of ``rvi bench`` (seed 0, trained or loaded from the cache),
on the first ``--n`` mnist-5k test images, explaining the true class with absolute Guided
Backprop maps:

- deletion AUC with the map's order (most relevant first, MoRF), with a random order (uniform
  noise as the map: the model's own resistance to occlusion), and with the least relevant pixels
  first (LeRF); the model-relative scores ``random - MoRF`` (gain over random order) and
  ``LeRF - MoRF`` (Bluecher et al. 2024): the metrics ``deletion_gain`` and ``lerf_morf``;
  the first two again with removed pixels set to the blurred image (``deletion_gain_blur``);
- infidelity's parts on signed maps: E[Δf²], the target logit's mean squared change under the
  noise (the scale raw infidelity is measured in), raw normalized infidelity, and the metric
  ``infidelity_unexplained`` (= raw / E[Δf²] = 1 - R²);
- the randomization test's similarity (Spearman) between each image's trained map and the fully
  randomized model's map (cascading, every layer re-initialized) of the same image, against the
  floor of the same statistic for a *different* image (the randomized maps shifted by one image)
  and for the trivial image map.

Means over images with a 95% normal interval; one pair of models, so the intervals describe these
two models only. Writes ``benchmarks/results/calibration.md``.

    python benchmarks/calibration.py --cache-dir ~/.cache/rvi/models   # rvi bench's cache
"""

import math

import torch

import rvi
from rvi.models.cache import get_trained_model
from rvi.scoring.controls import image_map, randomized_maps
from rvi.metrics.faithfulness import deletion, infidelity
from rvi.metrics.relative import deletion_gain, infidelity_unexplained, lerf_morf
from rvi.metrics.similarity import spearman

from _common import RESULTS, machine, parser, write_text


def interval(values: torch.Tensor) -> str:
    """"mean [95% normal interval]" over the images."""
    values = values.double()
    half = 1.96 * float(values.std()) / math.sqrt(len(values))
    mean = float(values.mean())
    return f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


def model_rows(name: str, model, images, labels, seed: int) -> list:
    maps = rvi.explain(model, images, "true", "guided_backprop", labels=labels).maps
    morf = deletion(model, images, maps, labels)
    gain = deletion_gain(model, images, maps, labels, seed=seed)  # the registered metric
    relative = lerf_morf(model, images, maps, labels)
    random, lerf = gain + morf, relative + morf
    blur_morf = deletion(model, images, maps, labels, baseline="blur")
    blur_gain = deletion_gain(model, images, maps, labels, seed=seed, baseline="blur")
    signed = rvi.explain(model, images, labels, "guided_backprop", absolute=False).maps
    change = infidelity(model, images, torch.zeros_like(signed), labels, seed=seed,
                        normalize=False)  # E[Δf²]
    raw = infidelity(model, images, signed, labels, seed=seed)
    unexplained = infidelity_unexplained(model, images, signed, labels, seed=seed)
    *_, (_, _, _, randomized) = randomized_maps(model, images, "true", labels=labels, seed=seed)
    trained, random_maps = maps.cpu(), randomized.maps.cpu()
    same = spearman(random_maps, trained)
    other = spearman(random_maps.roll(1, dims=0), trained)
    image = spearman(image_map(images).cpu(), trained)
    return [f"| {name} | {interval(morf)} | {interval(random)} | {interval(lerf)} | "
            f"{interval(gain)} | {interval(relative)} |",
            f"| {name} | {interval(same)} | {interval(other)} | {interval(image)} | "
            f"{interval(same - other)} |",
            f"| {name} | {interval(change)} | {interval(raw)} | {interval(unexplained)} |",
            f"| {name} | {interval(blur_morf)} | {interval(blur_gain + blur_morf)} | "
            f"{interval(blur_gain)} |"]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="test images (default 300)")
    p.add_argument("--seed", type=int, default=0, help="training seed of the pair")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = rvi.load_dataset("mnist-5k")
    config = rvi.BenchmarkConfig(seeds=(args.seed,))
    images, labels = data.test_images[:args.n], data.test_labels[:args.n]
    faithful, randomization, infidelities, blurred = [], [], [], []
    for kind in ("natural", "robust"):
        model, _, path = get_trained_model(data, config.model, config.recipe(kind, args.seed),
                                           args.cache_dir, device=args.device, quiet=True)
        rows = model_rows(f"{kind} ({path.name})", model, images, labels, args.seed)
        faithful.append(rows[0])
        randomization.append(rows[1])
        infidelities.append(rows[2])
        blurred.append(rows[3])
    text = "\n".join([
        "# Each model's own baselines (mnist-5k LeNets of `rvi bench`)", "",
        f"`python benchmarks/calibration.py`: seed {args.seed}, the first {args.n} mnist-5k test "
        "images, absolute Guided Backprop maps of the true class; mean [95% normal interval] "
        "over images. One pair of models: the intervals describe these two models only.", "",
        f"Machine: {machine(args.device)}", "",
        "## Deletion AUC (lower is more faithful) against the same model's baselines", "",
        "| model | map order (MoRF) | random order | least relevant first (LeRF) | "
        "`deletion_gain` (random − MoRF) | `lerf_morf` (LeRF − MoRF) |",
        "| --- | --- | --- | --- | --- | --- |", *faithful, "",
        "The same with removed pixels set to the blurred image (`baseline=\"blur\"`, a removal "
        "closer to the data) instead of black:", "",
        "| model | map order (MoRF) | random order | `deletion_gain_blur` (random − MoRF) |",
        "| --- | --- | --- | --- |", *blurred, "",
        "## Infidelity (lower is more faithful) and the logit's scale, signed maps", "",
        "| model | E[Δf²] (squared logit units) | `infidelity` (normalized) | "
        "`infidelity_unexplained` (1 − R²) |", "| --- | --- | --- | --- |", *infidelities, "",
        "## Randomization test: Spearman of trained vs fully randomized maps", "",
        "| model | same image | other image (floor) | image map vs trained map | "
        "same − other |", "| --- | --- | --- | --- | --- |", *randomization, ""])
    write_text(RESULTS / "calibration.md", text)
    print(text)


if __name__ == "__main__":
    main()
