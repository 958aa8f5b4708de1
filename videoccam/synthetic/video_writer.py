"""The project's one mp4 writer: uint8 RGB frames -> H.264 (yuv420p) mp4 with the moov atom first.

Used by every generator of :mod:`videoccam.synthetic` and by ``tools/bench_dataloader.py``. Two encoders give the
same format: PyAV's bundled libx264 (in-process) and the ffmpeg binary of ``imageio-ffmpeg`` (frames piped in).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["ENCODERS", "X264_OPTIONS", "resolve_encoder", "write_mp4"]

ENCODERS = ("auto", "pyav", "ffmpeg")
# Small GOP so that random access is cheap; a fixed thread count keeps the bytes reproducible.
X264_OPTIONS = {"crf": "18", "preset": "veryfast", "g": "8", "threads": "1"}


def resolve_encoder(encoder: str) -> str:
    """``"pyav"`` or ``"ffmpeg"``; ``"auto"`` is PyAV when its wheel has libx264, else the ffmpeg binary.

    Raises:
        ValueError: On an unknown encoder name.
    """
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    if encoder != "auto":
        return encoder
    import av

    return "pyav" if "libx264" in av.codecs_available else "ffmpeg"


def write_mp4(
    frames: np.ndarray,
    path: str | Path,
    fps: float,
    encoder: str = "auto",
    x264_options: Mapping[str, str] | None = None,
) -> None:
    """Encode uint8 RGB frames [T, H, W, 3] (H, W even) as H.264 yuv420p mp4 with the moov atom first.

    Args:
        frames: The frames.
        path: Output file.
        fps: Frame rate.
        encoder: ``"pyav"`` (in-process, libx264 of the PyAV wheel), ``"ffmpeg"`` (pipes raw frames into the
            ffmpeg binary shipped with imageio-ffmpeg) or ``"auto"`` (PyAV when it has libx264).
        x264_options: libx264 settings that replace those of :data:`X264_OPTIONS` (e.g. ``{"crf": "23",
            "g": "30"}``).

    Raises:
        ValueError: On an odd frame size or unknown encoder.
        RuntimeError: If ffmpeg fails.
    """
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {width}x{height}")
    encoder = resolve_encoder(encoder)
    options = {**X264_OPTIONS, **(x264_options or {})}
    if encoder == "pyav":
        import av

        rate = fps if isinstance(fps, int) else Fraction(fps).limit_denominator(1001)
        with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = dict(options)
            for frame in frames:
                frame = np.ascontiguousarray(frame)  # a crop of a larger array is not contiguous
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return
    try:
        import imageio_ffmpeg
    except ImportError as error:
        raise ImportError("encoder='ffmpeg' needs imageio-ffmpeg; pip install imageio-ffmpeg") from error
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
        "-fflags", "+bitexact", "-flags:v", "+bitexact",
    ]  # fmt: skip
    for key, value in options.items():
        command += [f"-{key}", value]
    result = subprocess.run(command + [str(path)], input=frames.tobytes(), capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {result.stderr.decode(errors='replace').strip()}")
