"""tools/chat.py on the tiny converted model: one-shot (video, image, fps sampling), errors, interactive mode."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_tool, write_malicious_checkpoint
from tests.export.helpers import STAGE2, as_cli_options

chat_tool = load_tool("chat")


def _run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = chat_tool.main(argv, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def video(synthetic_data: Path) -> Path:
    return min((synthetic_data / "videos").glob("val_*.mp4"))


@pytest.fixture(scope="module")
def image(synthetic_data: Path) -> Path:
    return min((synthetic_data / "images").glob("*.jpg"))


def test_one_shot_video_cli_prints_an_answer_on_cpu(tiny_hf_videoccam: Path, video: Path):
    """The acceptance command, as a user runs it: a real process, streaming on, answer on stdout."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = subprocess.run(
        [sys.executable, "tools/chat.py", "--model", str(tiny_hf_videoccam), "--video", str(video),
         "--prompt", "Which shape appears first?", "--max-new-tokens", "8", "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip(), f"no answer printed; stderr: {run.stderr[-2000:]}"
    assert "loading model" in run.stderr  # progress goes to stderr, stdout holds only the answer


def test_streamed_answer_equals_non_streamed(tiny_hf_videoccam: Path, video: Path):
    argv = ["--model", str(tiny_hf_videoccam), "--video", str(video), "--prompt", "Which shape appears first?",
            "--max-new-tokens", "8", "--num-frames", "8"]
    code, streamed, err = _run(argv)
    assert code == 0, err
    code, plain, err = _run(argv + ["--no-stream"])
    assert code == 0, err
    assert streamed.strip() and streamed == plain


@pytest.mark.parametrize("sampling", [["--num-frames", "4"], ["--sampling", "fps", "--fps", "2", "--max-frames", "6"]])
def test_one_shot_image_and_fps_sampling(tiny_hf_videoccam: Path, image: Path, video: Path, sampling: list[str]):
    code, out, err = _run(["--model", str(tiny_hf_videoccam), "--image", str(image), "--prompt", "What colour is it?",
                           "--max-new-tokens", "6"])
    assert code == 0, err
    assert out.strip()
    code, out, err = _run(["--model", str(tiny_hf_videoccam), "--video", str(video), "--prompt", "<video>\nHow many?",
                           "--max-new-tokens", "6", *sampling])
    assert code == 0, err
    assert out.strip()


@pytest.mark.parametrize("flag", ["--video", "--image"])
def test_missing_media_fails_fast_naming_the_path(tiny_hf_videoccam: Path, tmp_path: Path, flag: str, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded when the media is missing")

    monkeypatch.setattr(chat_tool, "load_model_from_args", no_model)
    missing = tmp_path / ("missing_clip.mp4" if flag == "--video" else "missing.jpg")
    code, out, err = _run(["--model", str(tiny_hf_videoccam), flag, str(missing), "--prompt", "What?"])
    assert code != 0
    assert str(missing) in err and "not found" in err
    assert out == ""


def test_bad_model_arguments(tmp_path: Path, video: Path):
    code, _, err = _run(["--video", str(video), "--prompt", "What?"])
    assert code == 2 and "no model" in err
    code, _, err = _run(["--model", str(tmp_path / "nowhere"), "--prompt", "What?"])
    assert code == 2 and "nowhere" in err


def test_interactive_two_turns_then_quit(tiny_hf_videoccam: Path, video: Path, monkeypatch):
    from videoccam.inference.chat import ChatSession

    sent: list[list[dict]] = []
    original = ChatSession._chat

    def spy(self, messages, settings, streamer=None):
        sent.append([dict(m) for m in messages])
        return original(self, messages, settings, streamer)

    monkeypatch.setattr(ChatSession, "_chat", spy)
    stdin = "Which shape appears first?\n\nAnd which one is last?\n/quit\nnever sent\n"
    code, out, err = _run(["--model", str(tiny_hf_videoccam), "--video", str(video), "--num-frames", "8",
                           "--max-new-tokens", "6"], stdin=stdin)
    assert code == 0, err
    replies = [part.split("\n")[0] for part in out.split("Assistant: ")[1:]]
    assert len(replies) == 2 and all(r.strip() for r in replies), out
    # history as messages, the placeholder in the first user turn only, the first reply fed back
    assert [m["role"] for m in sent[1]] == ["user", "assistant", "user"]
    assert sent[1][0]["content"] == "<video>\nWhich shape appears first?"
    assert sent[1][1]["content"] == replies[0].strip()
    assert sent[1][2]["content"] == "And which one is last?"
    assert len(sent) == 2  # "never sent" came after /quit


def test_interactive_commands(tiny_hf_videoccam: Path, video: Path, image: Path, tmp_path: Path):
    stdin = "\n".join([
        f"/video {tmp_path / 'gone.mp4'}",  # error, the loop goes on
        "/frobnicate",                      # unknown command
        f"/image {image}",
        "What colour is it?",
        "/reset",
        "<video> Any placeholder works?",    # an <image> is loaded: fine, one placeholder in the first turn
        "/clear",
        "<video> No media now?",             # a placeholder without media: error, the loop goes on
        f"/video {video}",
        "How many shapes?",
    ]) + "\n"  # then end of input: exit 0
    code, out, err = _run(["--model", str(tiny_hf_videoccam), "--num-frames", "4", "--max-new-tokens", "4",
                           "--no-stream"], stdin=stdin)
    assert code == 0, err
    assert f"{tmp_path / 'gone.mp4'}: file not found" in err
    assert "unknown command /frobnicate" in err
    assert "[loaded image" in err and "[loaded video" in err
    assert "no image or video is loaded" in err
    replies = [part.split("\n")[0] for part in out.split("Assistant: ")[1:]]
    assert len(replies) == 3 and all(r.strip() for r in replies), out


def test_one_shot_from_config_and_checkpoint(tiny_trained, tiny_hf_videoccam: Path, video: Path):
    """--config + --checkpoint: the training checkpoint is converted in memory and answers like the folder."""
    argv = ["--video", str(video), "--prompt", "Which shape appears first?", "--max-new-tokens", "6", "--no-stream"]
    code, from_checkpoint, err = _run(["--config", str(STAGE2), "--checkpoint", str(tiny_trained.checkpoint),
                                       "--cfg-options", *as_cli_options(tiny_trained.options), *argv])
    assert code == 0, err
    code, from_folder, err = _run(["--model", str(tiny_hf_videoccam), *argv])
    assert code == 0, err
    assert from_checkpoint.strip() and from_checkpoint == from_folder


def test_checkpoint_that_would_run_code_is_refused(tiny_trained, video: Path, tmp_path: Path):
    marker = tmp_path / "payload_ran"
    evil = write_malicious_checkpoint(tmp_path / "iter_2.pth", marker,
                                      {"state_dict": tiny_trained.model.state_dict()})  # fmt: skip
    code, out, err = _run(["--config", str(STAGE2), "--checkpoint", str(evil), "--cfg-options",
                           *as_cli_options(tiny_trained.options), "--video", str(video), "--prompt", "Which shape?"])
    assert code == 2 and not out
    assert f"error: refusing to load checkpoint '{evil}': it needs the global posix.system" in err, err
    assert not marker.exists()
