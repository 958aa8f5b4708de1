"""videoccam/evaluation/benchmark.py: what the base class does for every benchmark (samples, limits, prompts)."""

from __future__ import annotations

import pytest

from videoccam.evaluation.benchmark import DEFAULT_VARIANT, Benchmark
from videoccam.evaluation.prompts import MC_INSTRUCTION
from videoccam.evaluation.samples import LoadedMedia, MediaRef, Sample


class Toy(Benchmark):
    name = "toy"
    limit_group = "task"

    def __init__(self, root, samples, **kwargs):
        super().__init__(root, **kwargs)
        self._toy = samples

    def load_samples(self):
        return list(self._toy)

    def compute_metrics(self, samples, replies):
        return {}

    def headline(self, metrics):
        return {}


def _sample(uid: str, task: str, generation: bool = False) -> Sample:
    return Sample(uid, MediaRef(f"{uid}.mp4"), f"Question: {uid}?", "A", num_options=2, meta={"task": task},
                  generation=generation)


def test_select_limits_per_group_and_checks_uids(tmp_path):
    samples = [_sample("a1", "a"), _sample("a2", "a"), _sample("b1", "b"), _sample("a3", "a")]
    toy = Toy(tmp_path, samples)
    assert toy.variants == (DEFAULT_VARIANT,)
    assert [s.uid for s in toy.select(2)] == ["a1", "a2", "b1"]
    assert toy.select() == samples
    with pytest.raises(ValueError, match="--limit must be positive"):
        toy.select(0)
    with pytest.raises(ValueError, match="duplicate question uid 'a1'"):
        Toy(tmp_path, [_sample("a1", "a"), _sample("a1", "b")]).samples()
    with pytest.raises(ValueError, match="no questions found"):
        Toy(tmp_path, []).samples()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Toy(tmp_path / "missing", samples)


def test_default_prompts(tmp_path):
    toy = Toy(tmp_path, [])
    media = LoadedMedia(frames=[], indices=[])
    assert toy.build_prompt(_sample("a1", "a"), DEFAULT_VARIANT, media) == f"<video>\nQuestion: a1?\n{MC_INSTRUCTION}"
    assert toy.build_prompt(_sample("g1", "g", generation=True), DEFAULT_VARIANT, media) == "<video>\nQuestion: g1?"
