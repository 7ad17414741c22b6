"""Every cleanliness metric for a natural and a PGD-trained LeNet on mnist-5k, beside the controls.

Run from the repository root:

    python benchmarks/saliency_metrics.py

Trains (or loads from ``benchmarks/cache``) a natural and an adversarially trained LeNet with the
shared recipes of ``benchmarks/recipes.py`` (natural: 10 epochs; robust: 30 epochs on
torchattacks PGD-7 eps 0.3 alpha 0.1; Adam one-cycle max lr 3e-3), then
scores Guided Backprop maps (absolute, target = true label, compared with the clean image) of
both models against every control: the same architecture with random weights, the plain
gradient, and the trivial explainers (image, Sobel edges, uniform noise). Each cell is the mean
over the 1,000 mnist-5k test images with a 95% bootstrap confidence interval (percentile,
2,000 resamples, scipy.stats.bootstrap via rvi.aggregate.mean_ci). The table is printed and
written atomically to ``benchmarks/results/saliency_metrics.txt``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from rvi.aggregate import mean_ci
from rvi.attacks import attack
from rvi.cache import get_trained_model
from rvi.controls import TRIVIAL_EXPLAINERS, random_weights_model
from rvi.data import load_dataset
from rvi.evaluate import predict
from rvi.metrics import METRICS, cleanliness, count_zero_maps
from rvi.saliency import explain

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
OUTPUT = HERE / "results" / "saliency_metrics.txt"

sys.path.insert(0, str(HERE))
from _common import write_text  # noqa: E402
from recipes import NATURAL, ROBUST, SEED_ATTACK as PGD7  # noqa: E402  (the shared recipes)

SEED = 0


def cell(values) -> str:
    if values is None:
        return "n/a"
    mean, low, high = mean_ci(values.double().numpy(), resamples=2000, seed=SEED)
    digits = 4 if abs(mean) < 10 else 2
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def table(header: list, rows: list) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main() -> str:
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = load_dataset("mnist-5k")
    images, labels = data.test_images, data.test_labels
    models = {}
    for name, config in (("natural", NATURAL), ("robust", ROBUST)):
        models[name] = get_trained_model(data, "lenet", config, CACHE, quiet=True)[0]
    models["random weights"] = random_weights_model("lenet", seed=SEED).eval()

    out = [f"rvi saliency metrics benchmark: mnist-5k test set, n = {len(images)} images",
           f"natural LeNet: {NATURAL.label}",
           f"robust LeNet:  {ROBUST.label}",
           f"random weights: build_model('lenet') seeded {SEED} (untrained)",
           "", "Accuracy (clean and under white-box PGD-7 eps 0.3 alpha 0.1, seeded random start)"]
    acc_rows = []
    for name, model in models.items():
        clean = (predict(model, images) == labels).float()
        adversarial = attack(model, images, labels, PGD7, seed=SEED)
        robust = (predict(model, adversarial) == labels).float()
        acc_rows.append([name, cell(clean), cell(robust)])
    out.append(table(["model", "clean accuracy", PGD7.label + " accuracy"], acc_rows))

    explainers = {}  # row label -> (saliency maps or None, model for model-based metrics)
    for name, model in models.items():
        for method, label in (("guided_backprop", "Guided Backprop"), ("saliency", "gradient")):
            result = explain(model, images, "true", method, labels=labels)
            explainers[f"{name} / {label}"] = (result.maps, model)
    for name, explainer in TRIVIAL_EXPLAINERS.items():
        explainers[f"trivial: {name}"] = (explainer(images, seed=SEED), None)

    out += ["",
            "Cleanliness of absolute maps (target = true label, compared with the clean image);",
            "mean [95% percentile bootstrap CI, 2000 resamples] over the test images; "
            "zero = all-zero maps.",
            "alignment scores the model's own gradient, so it is n/a for the trivial explainers."]
    metric_names = list(METRICS)
    header = ["explainer"] + [f"{m} ({'higher' if METRICS[m].higher_is_better else 'lower'} = "
                              f"cleaner)" for m in metric_names] + ["zero"]
    rows, scores = [], {}
    for label, (maps, model) in explainers.items():
        row = [label]
        for metric in metric_names:
            info = METRICS[metric]
            if info.needs_model and model is None:
                value = None
            else:
                value = cleanliness(maps, images, metric, model=model)
            scores[(label, metric)] = value
            row.append(cell(value))
        rows.append(row + [str(count_zero_maps(maps))])
    out.append(table(header, rows))

    out += ["", "Paired differences over the same images (robust minus natural), "
            "95% percentile bootstrap CI:"]
    diff_rows = []
    for label in ("Guided Backprop", "gradient"):
        row = [label]
        for metric in metric_names:
            row.append(cell(scores[(f"robust / {label}", metric)]
                            - scores[(f"natural / {label}", metric)]))
        diff_rows.append(row)
    out.append(table(["method"] + metric_names, diff_rows))
    out += ["", f"total time {time.perf_counter() - started:.0f} s (1 CPU thread)"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    report = main()
    write_text(OUTPUT, report)
    sys.stdout.write(report)
