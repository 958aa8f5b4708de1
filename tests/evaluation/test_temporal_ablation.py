"""videoccam/evaluation/temporal_ablation.py: results, table, plot and a failing run's error (the whole pipeline
runs in tests/tools/test_ablate_temporal.py)."""

from __future__ import annotations

import pytest
from PIL import Image

from videoccam.evaluation.grounding import AccuracyReport
from videoccam.evaluation.metrics import Tally
from videoccam.evaluation.temporal_ablation import VARIANTS, AblationResult, plot_results, train_variant


def _report(order: tuple[int, int], direction: tuple[int, int]) -> AccuracyReport:
    return AccuracyReport({"order": Tally(*order), "direction": Tally(*direction)},
                          rules={"order": "content words (color)", "direction": "content words (direction)"})


@pytest.fixture
def result() -> AblationResult:
    return AblationResult({
        "ccam": {16: _report((9, 10), (10, 10)), 64: _report((8, 10), (9, 10))},
        "no_mask": {16: _report((4, 10), (5, 10)), 64: _report((4, 10), (6, 10))},
    })  # fmt: skip


def test_results_dict_and_table(result):
    data = result.to_dict()
    assert data["ccam"] == {"16": 0.95, "64": 0.85} and data["no_mask"] == {"16": 0.45, "64": 0.5}
    assert data["per_task"]["ccam"]["64"] == {"order": 0.8, "direction": 0.9}
    assert data["rules"] == {"order": "content words (color)", "direction": "content words (direction)"}
    table = result.table().splitlines()
    assert table[0].split() == ["variant", "frames", "all", "order", "direction"]
    assert table[2].split() == ["ccam", "16", "0.950", "0.900", "1.000"]
    assert table[5].split() == ["no_mask", "64", "0.500", "0.400", "0.600"]


def test_plot(result, tmp_path):
    path = plot_results(result, tmp_path / "r.png")
    with Image.open(path) as image:
        assert image.size == (768, 504)


def test_the_variants_differ_only_in_the_mask():
    assert VARIANTS == {"ccam": {"model.projector.causal_mask": True}, "no_mask": {"model.projector.causal_mask": False}}


def test_a_failed_run_names_its_log(tmp_path):
    bad = tmp_path / "bad_config.py"
    bad.write_text("raise RuntimeError('this config is broken on purpose')\n")
    with pytest.raises(RuntimeError, match=r"training run failed \(exit [1-9]\d*\); log: .*train_stdout.log") as error:
        train_variant(bad, tmp_path / "run", [], seed=0)
    assert "broken on purpose" in str(error.value)
