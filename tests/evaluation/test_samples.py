"""videoccam/evaluation/samples.py: media references are hashable keys (videos are grouped by them), frame times."""

from __future__ import annotations

from videoccam.evaluation.samples import LoadedMedia, MediaRef, Sample


def test_media_refs_group_questions_and_frames_know_their_times():
    a, b = MediaRef("v.mp4"), MediaRef("v.mp4", bound=(1.0, 2.0))
    assert {a: 1, MediaRef("v.mp4"): 2} == {a: 2} and a != b and a.kind == "video"
    assert LoadedMedia(frames=[], indices=[0, 4, 8], fps=4.0).times == [0.0, 1.0, 2.0]
    assert LoadedMedia(frames=[], indices=[0, 4], fps=None).times == []
    sample = Sample("q1", a, "Question: ?", "B", num_options=4)
    assert sample.meta == {} and not sample.generation
