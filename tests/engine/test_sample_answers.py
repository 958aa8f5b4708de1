"""videoccam/engine/sample_answers.py: answers while training, equal to the exported model's.

The hook runs here on the tiny "trained" stage-2 model with a real dataset and visualizer; the same model exported
(``loaded``) must give the same greedy answers through ``chat``, since the hook asks through the training
pipeline (template, frames, splice). Its runs inside real trainings: tests/tools/test_train.py (stage 2 prints and
logs answers) and tests/engine/test_distributed.py (DDP, ZeRO-2, ZeRO-3: answered once, no hang).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from videoccam.dataset.dataset import VideoCCAMDataset
from videoccam.dataset.video_io import FrameSampling
from videoccam.engine.sample_answers import SampleAnswersHook
from videoccam.engine.visualizer import TEXT_FILE, TrainingVisualizer

FRAMES, BUDGET = 4, 6
QUESTION = "Which shape appears first?"


@pytest.fixture(scope="module")
def dataset(trained, synthetic_data, tmp_path_factory) -> VideoCCAMDataset:
    video = sorted((synthetic_data / "videos").glob("*.mp4"))[0].relative_to(synthetic_data).as_posix()
    image = sorted((synthetic_data / "images").glob("*.jpg"))[0].relative_to(synthetic_data).as_posix()
    records = [{"video": video, "conversations": [{"from": "human", "value": f"<video>\n{QUESTION}"},
                                                  {"from": "gpt", "value": "A red square."}]},
               {"image": image, "conversations": [{"from": "human", "value": "<image>\nWhat shape is it?"},
                                                  {"from": "gpt", "value": "A circle."}]}]  # fmt: skip
    path = tmp_path_factory.mktemp("sample_answers") / "data.json"
    path.write_text(json.dumps(records))
    return VideoCCAMDataset(str(path), trained.tokenizer, trained.image_processor, trained.template, num_queries=32,
                            max_length=512, data_root=str(synthetic_data), num_frames=FRAMES)  # fmt: skip


def _runner(model, dataset, tmp_path: Path, name: str):
    visualizer = TrainingVisualizer(name=name, tensorboard=False, save_dir=str(tmp_path))
    return SimpleNamespace(model=model, train_dataloader=SimpleNamespace(dataset=dataset), visualizer=visualizer,
                           iter=0)  # fmt: skip


def _chat(loaded, content: str, frames) -> str:
    model, tokenizer, processor = loaded
    return model.chat([[{"role": "user", "content": content}]], [frames], tokenizer, processor,
                      max_new_tokens=BUDGET, do_sample=False)[0]  # fmt: skip


def test_answers_every_interval_and_at_the_end_like_the_exported_model(trained, dataset, loaded, synthetic_data,
                                                                        tmp_path):  # fmt: skip
    hook = SampleAnswersHook(interval=2, max_new_tokens=BUDGET)  # no samples: the data's first video and image
    runner = _runner(trained.model, dataset, tmp_path, "sample_answers_default")
    hook.before_train(runner)
    for it in range(5):
        runner.iter = it
        hook.after_train_iter(runner, it)
    runner.iter = 5
    hook.after_train(runner)
    assert [(h["step"], h["index"]) for h in hook.history] == [(2, 0), (2, 1), (4, 0), (4, 1), (5, 0), (5, 1)]
    hook.after_train(runner)  # the end of training already answered at this step: nothing new
    assert len(hook.history) == 6
    assert trained.model.training is False  # the mode it had before (the fixture keeps it in eval)

    video = dataset.sample(0).media[0].path
    frames = FrameSampling(num_frames=FRAMES).load(video).frames
    image = FrameSampling().load(dataset.sample(1).media[0].path, "image").frames
    assert hook.history[0]["question"] == QUESTION and hook.history[0]["media"] == str(video)
    assert hook.history[0]["answer"] == _chat(loaded, f"<video>\n{QUESTION}", frames)
    assert hook.history[1]["answer"] == _chat(loaded, "<image>\nWhat shape is it?", image)
    texts = [json.loads(line) for line in next(tmp_path.rglob(TEXT_FILE)).read_text().splitlines()]
    assert [(t["tag"], t["step"]) for t in texts] == [("sample_answers/0", 2), ("sample_answers/1", 2),
                                                      ("sample_answers/0", 4), ("sample_answers/1", 4),
                                                      ("sample_answers/0", 5), ("sample_answers/1", 5)]  # fmt: skip
    assert hook.history[0]["answer"] in texts[0]["text"]


def test_explicit_samples_relative_to_the_data_root_with_their_own_frames(trained, dataset, loaded, synthetic_data,
                                                                          tmp_path):  # fmt: skip
    video = dataset.sample(0).media[0].path.relative_to(synthetic_data).as_posix()
    hook = SampleAnswersHook(interval=1, max_new_tokens=BUDGET,
                             samples=[dict(video=video, question=QUESTION, num_frames=2), dict(question="Hello?")])
    runner = _runner(trained.model, dataset, tmp_path, "sample_answers_explicit")
    hook.before_train(runner)
    assert hook.answer(runner, 1) == [
        _chat(loaded, f"<video>\n{QUESTION}", FrameSampling(num_frames=2).load(synthetic_data / video).frames),
        _chat(loaded, "Hello?", None),
    ]


def test_off_costs_nothing_and_bad_settings_are_refused(dataset, tmp_path):
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"interval=0 touched runner.{name}")

    hook = SampleAnswersHook(interval=0, samples=[dict(video="missing.mp4", question="?")])
    hook.before_train(Untouchable())
    hook.after_train_iter(Untouchable(), 0)
    hook.after_train(Untouchable())
    with pytest.raises(ValueError, match="integer >= 0"):
        SampleAnswersHook(interval=-1)
    with pytest.raises(ValueError, match="needs a 'question'"):
        SampleAnswersHook(interval=1, samples=[dict(video="a.mp4")])
    hook = SampleAnswersHook(interval=1, samples=[dict(video="no/such/clip.mp4", question="?")])
    runner = SimpleNamespace(model=SimpleNamespace(projector=1, llm=1, parameters=lambda: iter(())),
                             train_dataloader=SimpleNamespace(dataset=dataset))  # fmt: skip
    with pytest.raises(ValueError, match="no/such/clip.mp4.*set its interval to 0"):
        hook.before_train(runner)
