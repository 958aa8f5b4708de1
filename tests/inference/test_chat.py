"""videoccam/inference/chat.py: conversation state, placeholders, media caching and streaming, on a fake model."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from videoccam.dataset.video_io import MediaLoadError
from videoccam.inference.chat import (
    ChatSession,
    GenerationSettings,
    Media,
    guess_media_kind,
    load_media,
    strip_placeholders,
)


class FakeTokenizer:
    """Decodes ids as characters (what the streamers need)."""

    def decode(self, ids, skip_special_tokens: bool = False, **_: object) -> str:
        return "".join(chr(i) for i in ids)


class FakeImageProcessor:
    def __call__(self, images, return_tensors: str = "pt"):
        return {"pixel_values": torch.zeros(len(images), 3, 4, 4)}


class FakeModel:
    """Records calls; replies with ``reply`` (streamed character by character when a streamer is given)."""

    def __init__(self, reply: str = " the red square. ", fail: bool = False) -> None:
        self.reply, self.fail = reply, fail
        self.encode_calls: list[list[int]] = []
        self.chat_calls: list[dict] = []

    def encode_media(self, pixel_values, num_frames):
        self.encode_calls.append(list(num_frames))
        return torch.ones(len(num_frames), 2, 3)

    def chat(self, messages, images, tokenizer, image_processor, media_embeds=None, streamer=None, **kwargs):
        self.chat_calls.append({"messages": [list(m) for m in messages], "media_embeds": media_embeds, **kwargs})
        if self.fail:
            raise RuntimeError("generation failed")
        if streamer is not None:
            streamer.put(torch.zeros(1, 0, dtype=torch.long))  # the prompt (empty: inputs_embeds only)
            for ch in self.reply:
                streamer.put(torch.tensor([ord(ch)]))
            streamer.end()
        return [self.reply.strip()]


def _session(model: FakeModel | None = None, media: Media | None = None) -> ChatSession:
    session = ChatSession(model or FakeModel(), FakeTokenizer(), FakeImageProcessor())
    session.set_media(media)
    return session


def _video(n: int = 3) -> Media:
    return Media("video", [Image.new("RGB", (8, 8))] * n, "/data/clip.mp4")


def test_placeholder_added_to_first_turn_only_and_media_encoded_once():
    model = FakeModel()
    session = _session(model, _video(3))
    assert session.ask("What happens first?") == "the red square."
    assert session.ask("And then?") == "the red square."
    first, second = model.chat_calls
    assert first["messages"] == [[{"role": "user", "content": "<video>\nWhat happens first?"}]]
    assert [m["content"] for m in second["messages"][0]] == ["<video>\nWhat happens first?", "the red square.",
                                                             "And then?"]
    assert model.encode_calls == [[3]]  # encoded once, reused by the second turn
    assert second["media_embeds"][0] is first["media_embeds"][0]
    assert session.num_turns == 2


def test_image_placeholder_and_user_placeholder_kept():
    session = _session(media=Media("image", [Image.new("RGB", (8, 8))], "a.jpg"))
    assert session.user_content("Describe it.") == "<image>\nDescribe it."
    assert session.user_content("Look: <image>\nDescribe it.") == "Look: <image>\nDescribe it."


def test_text_only_conversation_has_no_placeholder_and_no_media():
    model = FakeModel()
    session = _session(model)
    session.ask("Hello?")
    assert model.chat_calls[0]["messages"] == [[{"role": "user", "content": "Hello?"}]]
    assert model.chat_calls[0]["media_embeds"] is None and model.encode_calls == []


@pytest.mark.parametrize(
    ("media", "turns", "text", "match"),
    [
        (None, 0, "<video>\nWhat?", "no image or video is loaded"),
        ("video", 1, "<video>\nAnd now?", "turn 2 contains a media placeholder"),
        ("video", 0, "   ", "empty"),
    ],
)
def test_invalid_messages_are_rejected_and_leave_history_alone(media, turns, text, match):
    session = _session(media=_video() if media else None)
    for _ in range(turns):
        session.ask("What?")
    before = list(session.messages)
    with pytest.raises(ValueError, match=match):
        session.ask(text)
    assert session.messages == before


def test_new_media_and_reset_start_new_conversations():
    model = FakeModel()
    session = _session(model, _video(3))
    session.ask("What?")
    session.reset()
    assert session.messages == [] and session.media is not None
    session.ask("What?")
    assert model.encode_calls == [[3]]  # reset keeps the encoded media
    session.set_media(_video(5))
    assert session.messages == []
    session.ask("What?")
    assert model.encode_calls == [[3], [5]]


def test_stream_yields_growing_prefixes_and_records_the_final_reply():
    model = FakeModel(reply=" the red square. ")
    session = _session(model, _video())
    items = list(session.stream("What happens first?", GenerationSettings(max_new_tokens=7)))
    assert items[-1] == "the red square."
    assert all(items[-1].startswith(item.rstrip()) for item in items)
    assert len(items) > 3  # really streamed piece by piece
    assert session.messages[-1] == {"role": "assistant", "content": "the red square."}
    assert model.chat_calls[0]["max_new_tokens"] == 7 and model.chat_calls[0]["do_sample"] is False


def test_stream_reraises_worker_errors_without_hanging():
    session = _session(FakeModel(fail=True), _video())
    with pytest.raises(RuntimeError, match="generation failed"):
        list(session.stream("What?", timeout=30))
    assert session.messages == []


def test_media_kind_and_missing_files(tmp_path):
    assert guess_media_kind("a/b.JPG") == "image"
    assert guess_media_kind("a/b.gif") == "video"
    assert guess_media_kind("a/b.mp4") == "video"
    assert guess_media_kind(tmp_path) == "video"  # a frame folder
    missing = tmp_path / "nope.mp4"
    with pytest.raises(MediaLoadError, match="nope.mp4"):
        load_media(missing)
    with pytest.raises(MediaLoadError, match="nope.png"):
        load_media(tmp_path / "nope.png")
    assert strip_placeholders("<video>\nWhat happens?") == "What happens?"
