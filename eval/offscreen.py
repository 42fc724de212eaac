"""Offscreen audio for every test sample (REFERENCE.md D.6): which other sample's audio plays in each evaluation pass.

- Offscreen: for each evaluation pass a `random.Random(seed)` walks the samples in order; for sample i it draws a class
  with `choice(sorted(classes - excluded))`, then one audio of that class from the same test set. The excluded classes
  are the labels of every sample that shares i's image (its own class on VGG-SS and S4, both targets' classes on IS3 /
  IS3+) and every class the annotation lists as visible in that image (`Sample.visible`: the synthetic test sets
  record it; the real VGG-SS and S4 annotations name only the sounding class, so there only that one is known). An
  audio is chosen once per distinct file (S4's five frames share one wav). Default seeds: the ICASSP evaluation's
  ten, 1234 ... 9999. The chosen audio is processed exactly like a positive, so its embedding is the
  positive embedding of the sample it belongs to.
The silence and noise inputs come from `pipeline.load.negatives`, the one place that builds them for training and
evaluation.
"""
from __future__ import annotations

import random
from collections import defaultdict

import numpy as np

from eval.errors import EvalError
from eval.testsets import TestSet

OFFSCREEN_SEEDS = (1234, 2345, 3456, 4567, 5678, 6789, 7890, 8901, 9012, 9999)


def excluded_classes(testset: TestSet) -> list[frozenset[str]]:
    """For each sample, the classes its offscreen audio must not have: the labels of all samples of its image and
    every class the annotation lists as visible in it."""
    by_group: dict[str, set[str]] = defaultdict(set)
    for s in testset.samples:
        by_group[s.group].add(s.label)
        by_group[s.group].update(s.visible)
    return [frozenset(by_group[s.group]) for s in testset.samples]


def audio_pool(testset: TestSet) -> dict[str, list[int]]:
    """class -> indices of the samples holding each distinct audio file of that class, in test-set order."""
    pool: dict[str, list[int]] = defaultdict(list)
    seen: set = set()
    for i, s in enumerate(testset.samples):
        if s.audio not in seen:
            seen.add(s.audio)
            pool[s.label].append(i)
    return dict(pool)


def offscreen_choice(testset: TestSet, seeds=OFFSCREEN_SEEDS) -> np.ndarray:
    """int64 [len(seeds), N]: index of the sample whose audio is sample i's offscreen audio in each pass."""
    pool = audio_pool(testset)
    classes = set(pool)
    excluded = excluded_classes(testset)
    remaining_cache: dict[frozenset, list[str]] = {}
    out = np.empty((len(seeds), len(testset)), np.int64)
    for p, seed in enumerate(seeds):
        rng = random.Random(seed)
        for i, ex in enumerate(excluded):
            remaining = remaining_cache.get(ex)
            if remaining is None:
                remaining = remaining_cache[ex] = sorted(classes - ex)
            if not remaining:
                raise EvalError(f"{testset.root}: sample {testset.samples[i].key!r} has no other class to draw "
                                f"offscreen audio from (the test set needs at least one more class)")
            cls = rng.choice(remaining)
            out[p, i] = rng.choice(pool[cls])
    return out

