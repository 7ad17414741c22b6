"""The first-layer mechanism of a committed study's models (rvi.metrics.mechanism): per seed and model,
the first convolution's threshold channels (found from weights and responses), the share of the
Guided Backprop maps' mass that flows through them on natural test images, and the share of
that mass on the digit. The models are read from the cache the study was run with (nothing is
trained; a model not in the cache is named, not measured).

    python benchmarks/mechanism.py benchmarks/results/mnist_default_study --data-dir ../shared/data \
        --n 500 --out benchmarks/results/mechanism.md
"""

import time

import numpy as np
import torch

import rvi
from rvi.models.cache import cached_model_path
from rvi.metrics.mechanism import mechanism_summary

from _common import machine, parser, write_text


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("study", help="a committed study folder (BenchmarkResult.save)")
    p.add_argument("--n", type=int, default=500, help="first N test images of the study")
    p.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config = rvi.BenchmarkResult.load(args.study).config
    data = rvi.load_dataset(config.dataset, args.data_dir, download=False)
    images, labels = data.test_images[:args.n], data.test_labels[:args.n]
    rows, missing = [], []
    for seed in config.seeds:
        for kind in ("natural", "robust"):
            path = cached_model_path(args.cache_dir, data, config.model, config.recipe(kind, seed))
            if not path.exists():
                missing.append(f"{kind} seed {seed} ({path.name})")
                continue
            model = rvi.load_model(path, data.num_classes, data.image_shape[0])
            summary = mechanism_summary(model, images, labels, method=config.methods[0])
            rows.append((kind, seed, summary))
            print(kind, seed, summary, flush=True)
    lines = [f"# First-layer mechanism of `{args.study}` ({config.methods[0]}, natural input, "
             f"first {args.n} test images, target true)", "",
             "| model | seed | threshold channels | their thresholds | mass through them | "
             "of it on the digit |", "| --- | --- | --- | --- | --- | --- |"]
    for kind, seed, s in rows:
        lines.append(f"| {kind} | {seed} | {s['threshold_channels']} | "
                     f"{', '.join(f'{t:.2f}' for t in s['thresholds']) or '—'} | "
                     f"{s['threshold_share']:.3f} | "
                     + ("—" if np.isnan(s["foreground_share"]) else f"{s['foreground_share']:.3f}")
                     + " |")
    for kind in ("natural", "robust"):
        shares = [s["threshold_share"] for k, _, s in rows if k == kind]
        if shares:
            lines.append(f"\n{kind}: mass through threshold channels {np.mean(shares):.3f} mean, "
                         f"{min(shares):.3f}–{max(shares):.3f} over {len(shares)} "
                         f"seed{'s' if len(shares) != 1 else ''}")
    if missing:
        lines.append(f"\nnot in the cache (not measured): {', '.join(missing)}")
    lines += ["", machine(args.device),
              f"wall time {time.perf_counter() - started:.0f} s; command: python "
              f"benchmarks/mechanism.py {args.study} --n {args.n}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
