"""videoccam/engine/visualizer.py: json scalars always, TensorBoard event files (the default install has the
package the default configs log to), text logging."""

from __future__ import annotations

import ast
import json
import re

from mmengine.config import Config
from mmengine.visualization import LocalVisBackend, TensorboardVisBackend

from tests.conftest import ROOT
from videoccam.engine import visualizer as visualizer_module
from videoccam.engine.visualizer import TEXT_FILE, TrainingVisualizer, add_text, tensorboard_available


def _backends(visualizer) -> list[type]:
    return [type(b) for b in visualizer._vis_backends.values()]


def test_the_default_install_has_what_the_default_configs_log_to():
    """configs/_base_ turns TensorBoard on, so setup.py's core requirements (bash tools/install.sh) hold the
    package: README command 1 prints no warning about it, and its curves open in TensorBoard."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    core = next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and node.targets[0].id == "CORE")  # fmt: skip
    assert Config.fromfile(str(ROOT / "configs/_base_/videoccam_stage1.py")).tensorboard is True
    assert any(re.match(r"tensorboard\b", requirement) for requirement in core), core  # bounded: "tensorboard<3"
    assert tensorboard_available()  # this environment was installed from setup.py


def test_tensorboard_event_files_hold_the_scalars_and_texts(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vis = TrainingVisualizer(name="vis_tb", save_dir=str(tmp_path))
    assert _backends(vis) == [LocalVisBackend, TensorboardVisBackend]
    for step, loss in [(1, 2.0), (2, 1.5)]:
        vis.add_scalars({"loss": loss, "lr": 1e-3}, step=step)
    vis.add_text("sample_answers/0", "**Q**: what?\n\n**A**: that.", step=2)
    event_dir = tmp_path / "vis_data"
    assert list(event_dir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(event_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 2.0), (2, 1.5)]
    assert "sample_answers/0/text_summary" in events.Tags()["tensors"]
    assert [json.loads(line)["step"] for line in (event_dir / "scalars.json").read_text().splitlines()] == [1, 2]
    assert json.loads((event_dir / TEXT_FILE).read_text()) == {"tag": "sample_answers/0", "step": 2,
                                                               "text": "**Q**: what?\n\n**A**: that."}


def test_one_setting_turns_tensorboard_off(tmp_path):
    vis = TrainingVisualizer(name="vis_off", tensorboard=False, save_dir=str(tmp_path))
    assert _backends(vis) == [LocalVisBackend]
    vis.add_scalars({"loss": 1.0}, step=1)
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_without_the_package_the_run_continues_with_json_and_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(visualizer_module, "tensorboard_available", lambda: False)
    logged = []
    monkeypatch.setattr(visualizer_module, "print_log", lambda msg, *args, **kwargs: logged.append(msg))
    vis = TrainingVisualizer(name="vis_missing", save_dir=str(tmp_path))
    assert _backends(vis) == [LocalVisBackend]
    assert len(logged) == 1 and "pip install tensorboard" in logged[0]
    add_text(vis, "t", "hello", 3)  # a plain function works on any Visualizer
    assert json.loads((tmp_path / "vis_data" / TEXT_FILE).read_text())["text"] == "hello"
