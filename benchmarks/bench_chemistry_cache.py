"""Memory the shared chemistry objects keep after many distinct chemistries.

    python benchmarks/bench_chemistry_cache.py            # this checkout
    PYTHONPATH=OTHER python benchmarks/bench_chemistry_cache.py

A batch of 4096 games of the standard task starts a new episode at every step for 100 steps (409,600
chemistries drawn, about 131,000 distinct) and asks for every row's chemistry object each time, as the
vector env's episode-end ``info`` does. Printed: the distinct chemistries, and the memory still held
after the loop (traced by ``tracemalloc``, and the process's RSS growth).
"""

from __future__ import annotations

import gc
import resource
import tracemalloc

import numpy as np

from alchemy_gym.core.batch import GameBatch, GameConfig
from alchemy_gym.core.episodes import EpisodeSource

STANDARD = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main(n: int = 4096, rounds: int = 100) -> None:
    batch = GameBatch(n, GameConfig(max_steps_per_trial=1, num_trials=1), EpisodeSource.sampled(STANDARD))
    batch.reset(None, list(range(n)))
    zeros, ones, rows = np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.bool_), range(n)
    batch.chemistries(rows)
    gc.collect()
    rss0 = rss_mb()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    codes = []
    for _ in range(rounds):
        c = batch.chem.astype(np.int64)
        codes.append(((c[:, 0] * 8 + c[:, 1]) * 4 + c[:, 3]) * 4096 + c[:, 2])
        batch.chemistries(rows)
        batch.step(zeros, begin=ones)
    distinct = len(np.unique(np.concatenate(codes)))
    del codes, c
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - traced0
    tracemalloc.stop()
    print(
        f"{distinct} distinct chemistries of {rounds * n} drawn: {kept / 2**20:.1f} MB kept (traced), "
        f"RSS +{rss_mb() - rss0:.1f} MB"
    )


if __name__ == "__main__":
    main()
