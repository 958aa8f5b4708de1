"""videoccam/evaluation/grounding.py: frame-ablation losses, answer scoring and accuracy, the gate; and a tiny model
that learns from its frames passes it while the same model untrained does not."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from PIL import Image, ImageDraw

from tests.conftest import ROOT
from videoccam.evaluation.backend import ScriptedBackend
from videoccam.evaluation.grounding import (
    AccuracyReport,
    ContentWords,
    ExactMatch,
    GroundingReport,
    ablate_frames,
    answer_accuracy,
    answer_words,
    check_grounding,
    derangement,
    frame_ablation_losses,
    qa_items,
)
from videoccam.evaluation.metrics import Tally
from videoccam.synthetic.shapes import CONTENT_VOCABULARIES


def test_derangement_moves_every_item_and_is_seeded():
    for n in range(2, 12):
        perm = derangement(n, seed=n)
        assert sorted(perm) == list(range(n)) and all(i != j for i, j in enumerate(perm))
        assert perm == derangement(n, seed=n)
    assert derangement(50, seed=1) != derangement(50, seed=2)
    with pytest.raises(ValueError, match="at least 2 media samples, got 1"):
        derangement(1)


def _items():
    def clip(value: float, frames: int) -> torch.Tensor:
        return torch.full((frames, 3, 4, 4), value)

    return [
        {"input_ids": [1], "labels": [1], "pixel_values": clip(1.0, 3)},
        {"input_ids": [2], "labels": [2]},  # text-only
        {"input_ids": [3], "labels": [3], "pixel_values": clip(2.0, 1)},
        {"input_ids": [4], "labels": [4], "pixel_values": clip(3.0, 5)},
    ]


def test_ablate_frames():
    items = _items()
    real = ablate_frames(items, "real")
    assert all(torch.equal(a["pixel_values"], b["pixel_values"]) for a, b in zip(real, items) if "pixel_values" in a)
    shuffled = ablate_frames(items, "shuffled", seed=0)
    values = {i: shuffled[i]["pixel_values"] for i in (0, 2, 3)}
    for i, frames in values.items():
        assert frames.shape == items[i]["pixel_values"].shape  # each sample keeps its frame count
        assert frames.unique().numel() == 1 and float(frames[0, 0, 0, 0]) != float(items[i]["pixel_values"][0, 0, 0, 0])
    assert sorted(float(v[0, 0, 0, 0]) for v in values.values()) == [1.0, 2.0, 3.0]  # a permutation
    assert "pixel_values" not in shuffled[1]
    blank = ablate_frames(items, "blank")
    assert all(not blank[i]["pixel_values"].any() for i in (0, 2, 3))  # normalised frames: 0 is mid-grey
    assert float(items[0]["pixel_values"].min()) == 1.0  # the inputs are not modified
    with pytest.raises(ValueError, match="unknown frame condition 'noise'"):
        ablate_frames(items, "noise")


def test_uint8_frames_are_normalised_as_in_training_and_blank_is_mid_grey():
    affine = torch.tensor([[2 / 255] * 3, [-1.0] * 3])  # SigLIP's rescale + normalisation as (scale, offset)
    frames = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    seen = []

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, pixel_values=None, **kwargs):
            seen.append(pixel_values)
            return SimpleNamespace(loss=torch.tensor(0.5))

    def collate(batch):
        return {"data": {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.ones(1, 3),
                         "labels": torch.tensor([[-100, 2, 3]]), "pixel_values": batch[0]["pixel_values"],
                         "pixel_affine": affine, "num_frames": [2]}}  # fmt: skip

    items = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "pixel_values": frames}]
    losses = frame_ablation_losses(Model(), items, collate, conditions=("real", "blank"))
    assert losses == {"real": 0.5, "blank": 0.5}
    torch.testing.assert_close(seen[0], frames.float() * 2 / 255 - 1)
    torch.testing.assert_close(seen[1], torch.full_like(seen[1], 128 * 2 / 255 - 1))  # mid-grey, not black
    assert ablate_frames(items, "blank")[0]["pixel_values"].dtype == torch.uint8


def test_answer_words():
    assert answer_words("The green square.") == ["green", "square"]
    assert answer_words(" Red!") == ["red"]
    assert answer_words("A.") == ["a"]  # an option letter is not an article
    assert answer_words("...") == [] and answer_words("") == []


def test_exact_match_compares_the_whole_normalised_answer():
    rule = ExactMatch()
    assert rule("green square", "The green square.") and rule("GREEN.", "Green") and rule("(A)", "A.")
    # the first word agrees, the answer does not (a first-word rule scored these right)
    assert not rule("The red circle.", "The green square.")
    assert not rule("A green square appears.", "The green square.")
    assert not rule("", "Red.") and not rule("...", "")
    assert rule.label("Red.") == "exact match"


SYNTHETIC = ContentWords(CONTENT_VOCABULARIES)


@pytest.mark.parametrize(("reply", "answer", "correct"), [
    ("The red circle.", "The green square.", False),  # right under a first-word rule: "the" == "the"
    ("Green square", "The green square.", True),  # wrong under a first-word rule: "green" != "the"
    ("It is a green square.", "The green square.", True),
    ("A green circle.", "The green square.", False),  # a conflicting shape
    ("Green.", "The green square.", False),  # the shape missing
    ("The green square, then a red square.", "The green square.", False),
    ("Red square", "Red.", True),  # a colour question: the shape is free
    ("Red, I think.", "Red.", True),
    ("Red or blue", "Red.", False),
    ("Blue.", "Red.", False),
    ("A red square appears, then a blue circle.", "A red square appears, then a blue circle.", True),
    ("A blue circle appears, then a red square.", "A red square appears, then a blue circle.", False),  # order
    ("A red circle appears, then a blue square.", "A red square appears, then a blue circle.", False),
    ("Two.", "Two shapes appear.", True),
    ("Three shapes appear.", "Two shapes appear.", False),
    ("The red square moves from the left to the right.", "A red square moves from the left to the right.", True),
    ("It moves from the left to the right.", "A red square moves from the left to the right.", False),
    ("A red square moves from the right to the left.", "A red square moves from the left to the right.", False),
    ("No corners at all.", "No, a circle has no corners.", False),
    ("A circle? No.", "No, a circle has no corners.", True),
    ("yes it does", "Yes, it does.", True),  # an answer without content words: exact match
    ("Yes.", "Yes, it does.", False),
])  # fmt: skip
def test_content_words_score_what_carries_the_answer(reply, answer, correct):
    assert SYNTHETIC(reply, answer) is correct


def test_content_words_label_names_the_vocabularies_an_answer_uses():
    assert SYNTHETIC.label("Red.") == "content words (color)"
    assert SYNTHETIC.label("The red square.") == "content words (color, shape)"
    assert SYNTHETIC.label("Three shapes appear.") == "content words (number)"
    assert SYNTHETIC.label("No, a circle has no corners.") == "content words (shape)"
    assert SYNTHETIC.label("Yes.") == "exact match"


def _records():
    return [
        {"id": "a", "video": "v/a.mp4", "task": "order",
         "conversations": [{"from": "human", "value": "<video>\nWhich color appears first?"},
                           {"from": "gpt", "value": "Red."}]},
        {"id": "b", "video": "v/b.mp4", "task": "direction",
         "conversations": [{"from": "human", "value": "<video>\nWhich way does the square move?"},
                           {"from": "gpt", "value": "Left."}]},
        {"id": "c", "image": "i/c.jpg",
         "conversations": [{"from": "human", "value": "<image>\nWhat color is the shape?"},
                           {"from": "gpt", "value": "Blue."}]},
        {"id": "d", "video": "v/a.mp4", "task": "order",
         "conversations": [{"from": "human", "value": "<video>\nWhich color appears last?"},
                           {"from": "gpt", "value": "Green."}]},
    ]  # fmt: skip


def test_qa_items_and_their_errors(tmp_path):
    items = qa_items(_records(), tmp_path)
    assert [(i.uid, i.kind, i.task, i.question) for i in items] == [
        ("a", "video", "order", "Which color appears first?"),
        ("b", "video", "direction", "Which way does the square move?"),
        ("c", "image", "all", "What color is the shape?"),
        ("d", "video", "order", "Which color appears last?"),
    ]
    assert items[0].media_path == tmp_path / "v/a.mp4"
    text_only = {"id": "t", "conversations": _records()[0]["conversations"]}
    with pytest.raises(ValueError, match=r"test\.json record 0 \(id 't'\): no video or image"):
        qa_items([text_only], tmp_path, source="test.json")
    two_turns = dict(_records()[0], conversations=_records()[0]["conversations"] * 2)
    with pytest.raises(ValueError, match="exactly one human question and one gpt answer, got 4 turns"):
        qa_items([two_turns], tmp_path)
    late = dict(_records()[0], conversations=[{"from": "human", "value": "Look: <video>"},
                                             {"from": "gpt", "value": "Red."}])  # fmt: skip
    with pytest.raises(ValueError, match="the placeholder must open the question"):
        qa_items([late], tmp_path)


def test_answer_accuracy_scores_each_task_by_its_rule_and_encodes_each_file_once(tmp_path):
    replies = {"Which color appears first?": "red, I think", "Which way does the square move?": "Right.",
               "What color is the shape?": "Blue", "Which color appears last?": "green."}  # fmt: skip
    backend = ScriptedBackend(lambda prompt: replies[prompt.split("\n", 1)[1]])
    loads = []

    def load_frames(path, kind):
        loads.append(path)
        return [Image.new("RGB", (8, 8), (len(loads) * 40, 0, 0))] * (1 if kind == "image" else 4)

    report = answer_accuracy(backend, qa_items(_records(), tmp_path), load_frames, SYNTHETIC, batch_size=3)
    assert {task: (t.correct, t.total) for task, t in report.tallies.items()} == {
        "order": (2, 2), "direction": (0, 1), "all": (1, 1)}  # fmt: skip
    assert report.accuracy() == 0.75 and report.accuracy(["order"]) == 1.0 and math.isnan(report.accuracy(["x"]))
    assert report.rules == {"order": "content words (color)", "direction": "content words (direction)",
                            "all": "content words (color)"}  # fmt: skip
    assert sorted(loads) == sorted({tmp_path / "v/a.mp4", tmp_path / "v/b.mp4", tmp_path / "i/c.jpg"})
    assert [(r["reply"], r["correct"]) for r in report.replies] == [
        ("red, I think", True), ("Right.", False), ("Blue", True), ("green.", True)]  # fmt: skip
    # the general rule (the default) wants the whole answer
    exact = answer_accuracy(backend, qa_items(_records(), tmp_path), load_frames, batch_size=3)
    assert [r["correct"] for r in exact.replies] == [False, False, True, True]
    assert set(exact.rules.values()) == {"exact match"}


def test_check_grounding_names_each_failed_criterion():
    ok = {"real": 0.3, "shuffled": 0.65, "blank": 0.61}
    assert check_grounding(ok, accuracy=0.9, chance=0.25) == []
    failures = check_grounding({"real": 0.45, "shuffled": 0.5, "blank": 0.95}, accuracy=0.45, chance=0.25)
    assert len(failures) == 2
    assert "loss with real frames 0.4500 is not 50% below the loss with shuffled frames 0.5000" in failures[0]
    assert "content accuracy 45.0% is not clearly above chance 25.0% (needs >= 2 x chance = 50.0%)" in failures[1]
    assert check_grounding({"real": 0.3, "shuffled": 0.59, "blank": 0.9}, accuracy=0.9, chance=0.25) == [
        "loss with real frames 0.3000 is not 50% below the loss with shuffled frames 0.5900 (needs <= 0.2950)"]
    assert check_grounding(ok, accuracy=0.49, chance=0.25, min_accuracy_over_chance=1.5) == []
    # with few questions a lucky guesser must not pass: 3 binomial standard errors above chance
    assert check_grounding(ok, accuracy=0.55, chance=0.25, num_questions=1000) == []
    assert check_grounding(ok, accuracy=0.55, chance=0.25, num_questions=20) == []
    few = check_grounding(ok, accuracy=0.53, chance=0.25, num_questions=20)
    assert len(few) == 1 and "chance + 3 standard errors over 20 questions = 54.0%" in few[0]
    # one task read well cannot carry another one read at chance
    per_task = {"first_color": (0.9, 0.25), "first_shape": (0.3, 1 / 3)}
    weak = check_grounding(ok, accuracy=0.6, chance=0.29, per_task=per_task, min_task_over_chance=1.5)
    assert weak == ["first_shape: accuracy 30.0% is below 1.5 x its chance 33.3% (needs >= 50.0%)"]


def test_grounding_report_table_names_each_tasks_rule_and_chance():
    accuracy = AccuracyReport({"first_color": Tally(60, 80), "first_shape": Tally(40, 80), "describe": Tally(8, 80)},
                              rules={"first_color": "content words (color)", "first_shape": "content words (shape)",
                                     "describe": "content words (color, shape)"})  # fmt: skip
    report = GroundingReport({"real": 0.3, "shuffled": 0.7, "blank": 0.65}, accuracy,
                             {"first_color": 0.25, "first_shape": 1 / 3})  # fmt: skip
    assert report.content_tasks == ("first_color", "first_shape") and report.content_questions == 160
    assert report.content_accuracy == 100 / 160 and report.chance == pytest.approx((0.25 + 1 / 3) / 2)
    lines = report.table().splitlines()
    assert lines[5].split() == ["first_color", "60/80", "75.0%", "chance", "25.0%", "content", "words", "(color)"]
    assert lines[7].split() == ["describe", "8/80", "10.0%", "content", "words", "(color,", "shape)"]
    assert lines[8].split() == ["content", "questions:", "62.5%", "of", "160", "(chance", "29.2%)"]
    assert report.to_dict()["rules"]["first_shape"] == "content words (shape)"
    assert report.failures(min_task_over_chance=1.4) == []
    assert report.failures() == [  # the gate's defaults: every content task at least twice its chance
        "first_shape: accuracy 50.0% is below 2 x its chance 33.3% (needs >= 66.7%)"]


# ----------------------------------------------------------------------------------------------------------------
# The criterion on real models: it passes a model that learnt from its frames and fails one that did not
# ----------------------------------------------------------------------------------------------------------------
COLORS = {"red": (220, 40, 40), "green": (40, 190, 70), "blue": (40, 90, 230), "yellow": (235, 215, 40)}


@pytest.fixture(scope="module")
def color_images(tmp_path_factory):
    """12 one-shape images, 3 per colour, each asked "What color is the shape?"."""
    root = tmp_path_factory.mktemp("color_images")
    records = []
    for i in range(12):
        name = list(COLORS)[i % 4]
        image = Image.new("RGB", (64, 64), (24, 24, 32))
        x, y = 16 + (i * 7) % 32, 16 + (i * 11) % 32
        ImageDraw.Draw(image).rectangle([x - 12, y - 12, x + 12, y + 12], fill=COLORS[name])
        image.save(root / f"{i}.png")
        records.append({"id": str(i), "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat color is the shape?"},
            {"from": "gpt", "value": f"{name.capitalize()}."}]})  # fmt: skip
    (root / "data.json").write_text(json.dumps(records))
    return root


def test_a_model_that_learnt_from_its_frames_passes_and_the_untrained_one_fails(tiny_models, color_images):
    from videoccam import xtuner_compat

    xtuner_compat.install()
    from videoccam.config import build_from_cfg, load_config, template_from_cfg
    from videoccam.dataset.collate import videoccam_collate_fn
    from videoccam.export.hf_model import build_hf_model
    from videoccam.export.tokenizer import prepare_tokenizer
    from tests.export.helpers import model_cfg_options

    cfg = load_config(ROOT / "configs/tiny/videoccam_tiny_qwen2_stage1.py", {
        **model_cfg_options(tiny_models), "model.freeze_llm": False,
        "train_dataloader.dataset.data_path": str(color_images / "data.json"),
        "train_dataloader.dataset.data_root": str(color_images)})  # fmt: skip
    dataset = build_from_cfg(cfg.train_dataloader.dataset)
    items = [dataset[i] for i in range(len(dataset))]
    torch.manual_seed(0)
    model = build_from_cfg(cfg.model)
    tokenizer = prepare_tokenizer(dataset.tokenizer, template_from_cfg(cfg))

    def losses() -> dict[str, float]:
        hf_model = build_hf_model(model, template_from_cfg(cfg), tokenizer)
        return frame_ablation_losses(hf_model, items, videoccam_collate_fn)

    before = losses()
    assert check_grounding(before, accuracy=1.0, chance=0.25) != []  # the criterion can fail: it does here

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        batch = [items[i] for i in torch.randperm(len(items), generator=generator)[:4].tolist()]
        loss = model(videoccam_collate_fn(batch)["data"], mode="loss")["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    after = losses()
    assert after["real"] < before["real"]
    assert check_grounding(after, accuracy=1.0, chance=0.25) == [], after
