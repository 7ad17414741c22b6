"""Combine saved results of one study run on disjoint seeds into one result folder.

Each seed of a study is computed on its own, so seeds run on different days or machines combine
into the result one run on all of them would give (``rvi.report.result.combine_seeds``; tested), with
the wall times summed. The parts are read, never changed.

    python benchmarks/combine_seeds.py PART1 PART2 [...] --out benchmarks/results/mnist_default_study
"""

import argparse
import time

import rvi
from rvi.report.result import combine_seeds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="+", help="result folders (BenchmarkResult.save), in seed order")
    p.add_argument("--out", required=True, help="folder for the combined result")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result in --out")
    args = p.parse_args()
    started = time.perf_counter()
    result = combine_seeds([rvi.BenchmarkResult.load(part) for part in args.parts])
    folder = result.save(args.out, overwrite=args.overwrite)
    print(result.to_markdown())
    print(f"seeds {', '.join(map(str, result.config.seeds))} saved to {folder} in "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
