"""videoccam/evaluation/lmms_eval_model.py: the lmms-eval adapter, on its own and inside the real lmms-eval.

In this venv (no lmms-eval): the adapter's logic on the exported tiny model (``hf_dir``): a video path, an image
path, PIL images and text only give the replies of ``model.chat`` on the frames of the project's sampler; the
module imports without lmms-eval and says what to install when the class is asked for.

In the lmms-eval venv (tests/evaluation/lmms_eval_env.py: lmms-eval 0.7.3, built once per run): lmms-eval's
registry finds ``videoccam`` through the entry point; a local task folder (a json dataset of one video and one
image, read offline by lmms-eval's own task loader) makes lmms-eval build real ``Instance`` objects, which the
adapter answers with the same replies, with xtuner and mmengine blocked from importing; a multiple-choice task
goes through ``loglikelihood``; and the ``lmms-eval`` command line evaluates the local task end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from tests.conftest import ROOT
from videoccam.dataset.video_io import FrameSampling
from videoccam.evaluation import lmms_eval_model
from videoccam.evaluation.lmms_eval_model import VideoCCAMLmmsMixin

NUM_FRAMES = 4
MAX_NEW_TOKENS = 6
VIDEO_Q, IMAGE_Q, TEXT_Q = "Which shape appears first?", "What shape is in the image?", "Say something."


@pytest.fixture(scope="module")
def media(synthetic_data: Path) -> dict[str, str]:
    return {"video": str(sorted((synthetic_data / "videos").glob("*.mp4"))[0]),
            "image": str(sorted((synthetic_data / "images").glob("*.jpg"))[0])}  # fmt: skip


@pytest.fixture(scope="module")
def expected(loaded, media) -> dict[str, str]:
    """Greedy replies of the folder's ``chat`` on the sampler's frames: what the adapter must answer."""
    model, tokenizer, processor = loaded
    video = FrameSampling(num_frames=NUM_FRAMES).load(media["video"]).frames
    image = [Image.open(media["image"]).convert("RGB")]
    cases = {"video": (f"<video>\n{VIDEO_Q}", video), "image": (f"<image>\n{IMAGE_Q}", image), "text": (TEXT_Q, None)}
    return {name: model.chat([[{"role": "user", "content": content}]], [frames], tokenizer, processor,
                             max_new_tokens=MAX_NEW_TOKENS, do_sample=False)[0]
            for name, (content, frames) in cases.items()}  # fmt: skip


def _request(context: str, doc_to_visual, doc_id: int, gen_kwargs: dict | None = None) -> SimpleNamespace:
    kwargs = {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0, "until": ["\n\n"]} if gen_kwargs is None else gen_kwargs
    return SimpleNamespace(args=(context, kwargs, doc_to_visual, doc_id, "local", "test"))


def test_adapter_answers_video_image_frames_and_text_like_chat(hf_dir, media, expected):
    adapter = VideoCCAMLmmsMixin(pretrained=str(hf_dir), num_frames=str(NUM_FRAMES), device="cpu", dtype="float32",
                                 batch_size="2")  # model args arrive as strings  # fmt: skip
    docs = [{"video": media["video"]}, {"image": media["image"]}, {"frames": True}, {}]
    adapter.task_dict = {"local": {"test": docs}}
    frames = FrameSampling(num_frames=NUM_FRAMES).load(media["video"]).frames

    def to_visual(doc):
        if "video" in doc:
            return [doc["video"]]
        if "image" in doc:
            return [doc["image"]]  # an image path
        return frames if doc else []  # PIL frames of one video; nothing

    requests = [_request(VIDEO_Q, to_visual, 0), _request(IMAGE_Q, to_visual, 1), _request(VIDEO_Q, to_visual, 2),
                _request(TEXT_Q, to_visual, 3)]  # fmt: skip
    assert adapter.generate_until(requests) == [expected["video"], expected["image"], expected["video"],
                                                expected["text"]]  # fmt: skip
    # a stop string cuts the reply
    reply = expected["video"]
    if len(reply) > 2:
        cut = adapter.generate_until([_request(VIDEO_Q, to_visual, 0, {"max_new_tokens": MAX_NEW_TOKENS,
                                                                       "until": [reply[2:]]})])  # fmt: skip
        assert cut == [reply[:2].strip()]
    logprob, greedy = adapter.loglikelihood([SimpleNamespace(args=(VIDEO_Q, " " + reply, to_visual, 0, "local",
                                                                   "test"))])[0]  # fmt: skip
    assert logprob < 0 and isinstance(greedy, bool)


def test_adapter_rejects_bad_args_and_several_videos(hf_dir, media, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a converted Video-CCAM folder"):
        VideoCCAMLmmsMixin(pretrained=str(tmp_path))
    with pytest.raises(ValueError, match="unknown videoccam model args"):
        VideoCCAMLmmsMixin(pretrained=str(hf_dir), frames=8)
    adapter = VideoCCAMLmmsMixin(pretrained=str(hf_dir), num_frames=NUM_FRAMES, device="cpu")
    with pytest.raises(ValueError, match="one video, one image or a list of PIL frames"):
        adapter._frames([media["video"], media["video"]])


@pytest.mark.skipif(lmms_eval_model.__dict__.get("VideoCCAM") is not None or
                    __import__("importlib.util").util.find_spec("lmms_eval") is not None,
                    reason="lmms-eval is installed here")  # fmt: skip
def test_module_imports_without_lmms_eval_and_names_it_when_the_class_is_needed():
    with pytest.raises(ImportError, match="pip install lmms-eval"):
        lmms_eval_model.VideoCCAM  # noqa: B018


# ------------------------------------------------------------------------------------------------------------
# the real lmms-eval, in its own venv
# ------------------------------------------------------------------------------------------------------------
TASK_YAML = """\
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: {output_type}
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: {target}
{extra}
metric_list:
  - metric: {metric}
    aggregation: mean
    higher_is_better: true
"""

TASK_UTILS = """\
import os

from PIL import Image


def doc_to_visual(doc):
    if os.environ.get("VIDEOCCAM_VISITS"):  # which process asked for which document's media
        with open(os.environ["VIDEOCCAM_VISITS"], "a") as f:
            f.write(os.environ.get("RANK", "-") + " " + doc["question"] + "\\n")
    if doc.get("video"):
        return [doc["video"]]  # a video path: the adapter samples its frames
    return [Image.open(doc["image"]).convert("RGB")]  # a PIL image, as lmms-eval's image tasks give


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    return {"exact_match": float(results[0].strip() == doc["answer"])}
"""

# run inside the lmms-eval venv: lmms-eval builds the Instances from the local tasks; xtuner / mmengine blocked
INSTANCE_SCRIPT = """\
import importlib.metadata, json, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("xtuner", "mmengine"):
            raise ImportError(f"{name} is blocked: the lmms-eval adapter must not need it")
        return None

sys.meta_path.insert(0, Block())
from lmms_eval.api.instance import Instance
from lmms_eval.models import get_model, list_available_models
from lmms_eval.tasks import TaskManager, get_task_dict

task_dir, model_dir, num_frames = sys.argv[1:4]
assert "videoccam" in list_available_models()
cls = get_model("videoccam")
lm = cls.create_from_arg_string(f"pretrained={model_dir},num_frames={num_frames},device=cpu,dtype=float32")
out = {"version": importlib.metadata.version("lmms_eval"), "class": f"{cls.__module__}.{cls.__qualname__}"}
tasks = get_task_dict(["videoccam_local_qa", "videoccam_local_choice"], TaskManager(include_path=task_dir))
for name, task in sorted(tasks.items()):
    task.build_all_requests(rank=0, world_size=1)
    lm.task_dict[name] = task.dataset
    instances = task.instances
    assert all(isinstance(i, Instance) for i in instances)
    kind = instances[0].request_type
    out[name] = {"type": kind, "n": len(instances),
                 "replies": lm.generate_until(instances) if kind == "generate_until" else lm.loglikelihood(instances)}
out["loaded"] = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("xtuner", "mmengine")})
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def lmms_python() -> Path:
    from tests.evaluation.lmms_eval_env import ensure_lmms_eval_venv

    return ensure_lmms_eval_venv(ROOT)


@pytest.fixture(scope="module")
def task_dir(media, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lmms_tasks")
    rows = [{"video": media["video"], "image": None, "question": VIDEO_Q, "answer": "-", "choices": ["A", "B"]},
            {"video": None, "image": media["image"], "question": IMAGE_Q, "answer": "-", "choices": ["A", "B"]}]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "utils.py").write_text(TASK_UTILS)
    (folder / "qa.yaml").write_text(TASK_YAML.format(
        name="videoccam_local_qa", data=folder / "data.jsonl", output_type="generate_until", target="answer",
        metric="exact_match", extra="process_results: !function utils.process_results\ngeneration_kwargs:\n"
        f"  max_new_tokens: {MAX_NEW_TOKENS}\n  temperature: 0\n  do_sample: false"))  # fmt: skip
    (folder / "choice.yaml").write_text(TASK_YAML.format(
        name="videoccam_local_choice", data=folder / "data.jsonl", output_type="multiple_choice", target=0,
        metric="acc", extra="doc_to_choice: choices"))  # fmt: skip
    return folder


DIST_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
             "MASTER_PORT")  # fmt: skip


def _lmms_env(tmp: Path) -> dict[str, str]:
    """A single-process environment: earlier in-process trainings of this test session may have left
    torch.distributed variables behind, with which lmms-eval's Accelerator would wait for other ranks."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP", *DIST_VARS)
           and not k.startswith(("TORCHELASTIC_", "ACCELERATE_", "SLURM_"))}  # fmt: skip
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp / "hf"),
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")  # fmt: skip
    return env


def test_real_lmms_eval_instances_for_a_video_and_an_image(lmms_python, task_dir, hf_dir, expected, tmp_path):
    run = subprocess.run([str(lmms_python), "-c", INSTANCE_SCRIPT, str(task_dir), str(hf_dir), str(NUM_FRAMES)],
                         cwd=tmp_path, env=_lmms_env(tmp_path), capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-5000:]}"
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["version"] == "0.7.3"  # the version the docs name
    assert out["class"] == "videoccam.evaluation.lmms_eval_model.VideoCCAM"
    assert out["loaded"] == []  # neither xtuner nor mmengine (both were blocked, nothing failed)
    qa = out["videoccam_local_qa"]
    assert qa["type"] == "generate_until" and qa["replies"] == [expected["video"], expected["image"]]
    choice = out["videoccam_local_choice"]
    assert choice["type"] == "loglikelihood" and choice["n"] == 4  # 2 docs x 2 choices
    assert all(logprob < 0 for logprob, _ in choice["replies"])


def _run_lmms_eval(lmms_python: Path, task_dir: Path, hf_dir: Path, tmp: Path, nproc: int = 0) -> dict:
    """The ``lmms-eval`` command on the local generation task (under ``torchrun`` with ``nproc`` processes):
    its replies by document, its results, which process read which document, and its output."""
    tmp.mkdir(parents=True, exist_ok=True)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc else []
    cmd = [str(lmms_python), *launcher, "-m", "lmms_eval", "--model", "videoccam", "--model_args",
           f"pretrained={hf_dir},num_frames={NUM_FRAMES},device=cpu", "--tasks", "videoccam_local_qa",
           "--include_path", str(task_dir), "--batch_size", "1", "--output_path", str(tmp / "results"),
           "--log_samples"]  # fmt: skip
    env = {**_lmms_env(tmp), "VIDEOCCAM_VISITS": str(tmp / "visits.txt")}
    run = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-5000:]}"
    samples = [json.loads(line) for path in (tmp / "results").rglob("*samples_videoccam_local_qa.jsonl")
               for line in path.read_text().splitlines()]  # fmt: skip
    replies = {s["doc_id"]: s["filtered_resps"] for s in samples}
    results = [json.loads(p.read_text())["results"] for p in (tmp / "results").rglob("*_results.json")]
    visits = sorted(tuple(line.split(" ", 1)) for line in (tmp / "visits.txt").read_text().splitlines())
    return {"replies": {k: v[0] if isinstance(v, list) else v for k, v in replies.items()}, "results": results,
            "visits": visits, "stdout": run.stdout}  # fmt: skip


@pytest.fixture(scope="module")
def one_process_run(lmms_python, task_dir, hf_dir, tmp_path_factory) -> dict:
    return _run_lmms_eval(lmms_python, task_dir, hf_dir, tmp_path_factory.mktemp("lmms_one"))


def test_lmms_eval_command_line_runs_a_local_task_offline(one_process_run, expected):
    assert one_process_run["replies"] == {0: expected["video"], 1: expected["image"]}
    assert "videoccam_local_qa" in one_process_run["stdout"]  # the results table
    assert one_process_run["visits"] == [("-", IMAGE_Q), ("-", VIDEO_Q)]


def test_adapter_takes_its_rank_from_the_launcher(hf_dir, monkeypatch):
    """Under torchrun / accelerate launch the adapter reports the launcher's global rank and world size (what
    lmms-eval shards requests by), and refuses more processes on a node than GPUs (simulated GPU count)."""
    import torch

    for key, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    adapter = VideoCCAMLmmsMixin(pretrained=str(hf_dir), device="cpu")
    assert (adapter._rank, adapter._world_size, adapter.device) == (3, 4, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"2 processes on this node but 1 GPU\(s\) visible"):
        VideoCCAMLmmsMixin(pretrained=str(hf_dir))


@pytest.mark.slow
def test_lmms_eval_two_processes_share_the_requests(lmms_python, task_dir, hf_dir, one_process_run, tmp_path):
    """``torchrun --nproc_per_node=2 -m lmms_eval``: each process reads only its share of the documents, and the
    gathered replies and results equal one process'."""
    two = _run_lmms_eval(lmms_python, task_dir, hf_dir, tmp_path, nproc=2)
    assert two["visits"] == [("0", VIDEO_Q), ("1", IMAGE_Q)]  # lmms-eval strides documents by rank
    assert two["replies"] == one_process_run["replies"]
    assert len(two["results"]) == 1 and two["results"] == one_process_run["results"]
