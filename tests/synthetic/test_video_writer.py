"""videoccam/synthetic/video_writer.py: both encoders write decodable H.264 mp4 files."""

from __future__ import annotations

import numpy as np
import pytest

from videoccam.dataset.video_io import get_video_info, load_video
from videoccam.synthetic import shapes as synthetic
from videoccam.synthetic.video_writer import resolve_encoder, write_mp4


def _nearest_color(pixel) -> str:
    palette = {**synthetic.COLORS, "background": synthetic.BACKGROUND}
    return min(palette, key=lambda name: float(np.sum((np.asarray(pixel) - np.array(palette[name])) ** 2)))


def test_ffmpeg_encoder_writes_a_decodable_mp4(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="encoder='ffmpeg' uses the binary shipped with imageio-ffmpeg")
    frames = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    frames[4:, 8:24, 8:24] = synthetic.COLORS["green"]
    write_mp4(frames, tmp_path / "a.mp4", fps=8, encoder="ffmpeg")
    decoded = load_video(tmp_path / "a.mp4", num_frames=8)
    assert len(decoded) == 8
    assert _nearest_color(np.asarray(decoded[1])[16, 16]) != "green"
    assert _nearest_color(np.asarray(decoded[6])[16, 16]) == "green"


@pytest.mark.parametrize("encoder", ["pyav", "auto"])
def test_pyav_encoder_options_and_fractional_rates(tmp_path, encoder):
    frames = np.zeros((10, 32, 48, 3), dtype=np.uint8)
    frames[5:, :, :24] = synthetic.COLORS["red"]
    write_mp4(frames[:, :, 8:40], tmp_path / "a.mp4", fps=8.0, encoder=encoder, x264_options={"crf": "23", "g": "4"})
    assert get_video_info(tmp_path / "a.mp4") == (10, 8.0)
    decoded = load_video(tmp_path / "a.mp4", num_frames=10)
    assert decoded[0].size == (32, 32)
    assert _nearest_color(np.asarray(decoded[7])[16, 4]) == "red"


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="even frame size"):
        write_mp4(np.zeros((2, 31, 32, 3), dtype=np.uint8), tmp_path / "odd.mp4", fps=8)
    with pytest.raises(ValueError, match="encoder must be one of"):
        resolve_encoder("x")
    assert resolve_encoder("ffmpeg") == "ffmpeg"
