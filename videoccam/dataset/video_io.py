"""Frame sampling and decoding: the only module of the project that reads videos.

A "video" is any of:

* a video file (mp4, mkv, webm, avi, ...), decoded with decord (``VideoReader(path, ctx=cpu(0)).get_batch``)
  or, when decord is not installed or fails on the file, with PyAV (sequential decode, keeping the sampled
  frames; the benchmark in install-notes.md section 7 puts both within 1.5x of each other on CPU). Both give
  frames as displayed: a phone video's display matrix (rotation side data) is applied, as decord and the
  ``ffmpeg`` CLI do;
* a folder of frames: the image files in it (``IMAGE_EXTENSIONS``, case-insensitive, hidden files ignored)
  in natural order (``1.jpg, 2.jpg, 10.jpg``, see :func:`list_frame_files`), played at ``folder_fps``;
* a GIF, decoded with PIL frame by frame.

Frame sampling is separate from decoding so it can be tested exactly:

* ``uniform`` (:func:`sample_uniform_indices`): the midpoints of ``num_frames`` equal segments, or every
  frame when the video is not longer than ``num_frames``. This is the rule of the upstream Video-CCAM
  evaluation code (design.md section 4).
* ``fps`` (:func:`sample_fps_indices`): one frame at the centre of every ``1 / target_fps`` seconds, falling
  back to ``uniform`` with ``max_frames`` frames when that gives more than ``max_frames`` frames.
* ``bound=(start_sec, end_sec)`` restricts either rule to a time window (MVBench annotations carry one),
  see :func:`frame_range_for_bound`.

:class:`FrameSampling` bundles a dataset's sampling settings (rule, counts, decoder threads, folder frame rate)
and loads one record's media with them; the training dataset and the data validator both use it, so they take
the same frames. ``output="numpy"`` returns uint8 arrays instead of PIL images (no PIL round trip; decord's
batch comes back as one ``[n, H, W, 3]`` array), which is what the training dataset uses.

Every failure to read a file (missing, empty, not a video, corrupt, truncated so that a sampled frame
cannot be decoded) raises :class:`MediaLoadError`, a ``ValueError`` whose message names the path and the
reason. A loader never returns fewer frames than it sampled.
"""

from __future__ import annotations

import math
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "SAMPLINGS",
    "VIDEO_BACKENDS",
    "FrameSampling",
    "MediaLoadError",
    "VideoClip",
    "VideoReaderBackend",
    "frame_range_for_bound",
    "get_video_info",
    "list_frame_files",
    "load_image",
    "load_video",
    "load_video_clip",
    "sample_fps_indices",
    "sample_uniform_indices",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""Suffixes (compared case-insensitively) of the files taken from a frame folder."""

VideoReaderBackend = Literal["auto", "decord", "pyav"]
"""Which library decodes video files: ``auto`` tries decord, then PyAV."""

VIDEO_BACKENDS: tuple[str, ...] = ("auto", "decord", "pyav")

DEFAULT_GIF_FPS = 10.0
"""Frame rate assumed for a GIF whose frames carry no (or zero) duration, as browsers do."""

_MAX_REASON_CHARS = 300


class MediaLoadError(ValueError):
    """An image or video could not be read.

    Attributes:
        path: The file or folder that failed, as a string.
        reason: What was wrong, in words (``"file not found"``, ``"file is empty (0 bytes)"``, ...).
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        # args = (path, reason) keeps the exception picklable (DataLoader workers, multiprocessing).
        super().__init__(self.path, reason)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class VideoClip:
    """Frames sampled from a video, with where they came from.

    Attributes:
        frames: The sampled frames, RGB, in temporal order: PIL images, or ``[H, W, 3]`` uint8 arrays when
            loaded with ``output="numpy"`` (for a video file decoded by decord, one ``[n, H, W, 3]`` array,
            which indexes and iterates as its frames).
        indices: Frame index in the source video of each returned frame.
        fps: Frame rate of the source (``folder_fps`` for a frame folder).
        total_frames: Number of frames in the source video.
    """

    frames: list[Image.Image] | list[np.ndarray] | np.ndarray
    indices: list[int]
    fps: float
    total_frames: int

    @property
    def timestamps(self) -> list[float]:
        """Time in seconds of each returned frame (``index / fps``), e.g. to pick subtitles."""
        return [index / self.fps for index in self.indices]


# --------------------------------------------------------------------------------------------------
# Sampling (pure functions)
# --------------------------------------------------------------------------------------------------


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def _positive_float(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def sample_uniform_indices(total_frames: int, num_frames: int) -> list[int]:
    """Midpoints of ``num_frames`` equal segments of a video (the upstream Video-CCAM rule).

    Segment edges are ``floor(i * total_frames / num_frames)`` for ``i = 0..num_frames`` (upstream writes
    ``torch.linspace(0, total, num_frames + 1, dtype=int)``); frame ``i`` is ``(edge[i] + edge[i+1]) // 2``.
    The edges are computed with exact integer arithmetic; upstream's float ``linspace`` rounds the same way
    for every power-of-two ``num_frames`` and differs by one frame for a few lengths otherwise (64 of the
    lengths 97..19999 at 96 frames). A video with at most ``num_frames`` frames gives all its frames.

    Example: 100 frames, 16 samples -> ``[3, 9, 15, 21, 28, 34, 40, 46, 53, 59, 65, 71, 78, 84, 90, 96]``.

    Args:
        total_frames: Number of frames in the video.
        num_frames: Number of frames wanted.

    Returns:
        Strictly increasing frame indices in ``[0, total_frames)``, ``min(total_frames, num_frames)`` of them.

    Raises:
        ValueError: If either count is not a positive integer.
    """
    total_frames = _positive_int("total_frames", total_frames)
    num_frames = _positive_int("num_frames", num_frames)
    if total_frames <= num_frames:
        return list(range(total_frames))
    edges = [i * total_frames // num_frames for i in range(num_frames + 1)]
    return [(start + end) // 2 for start, end in zip(edges[:-1], edges[1:])]


def sample_fps_indices(
    total_frames: int, video_fps: float, target_fps: float, max_frames: int | None
) -> list[int]:
    """Frames at ``target_fps``, each at the centre of its sampling interval, capped at ``max_frames``.

    With ``step = video_fps / target_fps`` (source frames per sample) sample ``k = 0, 1, ...`` is frame
    ``floor((k + 0.5) * step)``, i.e. the frame shown at the middle of the k-th ``1 / target_fps``-second
    interval, for as long as that index is inside the video. Centring matches the ``uniform`` rule, which
    also takes segment midpoints. Special cases:

    * ``target_fps >= video_fps`` (``step <= 1``): every frame.
    * A video shorter than half an interval: its middle frame ``total_frames // 2`` (the ``uniform`` rule
      with one frame), never an empty list.
    * More than ``max_frames`` samples: ``sample_uniform_indices(total_frames, max_frames)`` instead, so a
      long video is covered end to end rather than cut off.

    Examples: 100 frames at 30 fps sampled at 1 fps -> ``[15, 45, 75]``; 100 frames at 25 fps sampled at
    2 fps -> ``[6, 18, 31, 43, 56, 68, 81, 93]``, and with ``max_frames=4`` -> ``[12, 37, 62, 87]``.

    Args:
        total_frames: Number of frames in the video.
        video_fps: Frame rate of the video.
        target_fps: Sampling rate wanted.
        max_frames: Most frames to return; ``None`` for no limit.

    Returns:
        Strictly increasing frame indices in ``[0, total_frames)``.

    Raises:
        ValueError: On a non-positive count or rate.
    """
    total_frames = _positive_int("total_frames", total_frames)
    video_fps = _positive_float("video_fps", video_fps)
    target_fps = _positive_float("target_fps", target_fps)
    if max_frames is not None:
        max_frames = _positive_int("max_frames", max_frames)

    step = video_fps / target_fps
    if step <= 1.0:
        indices = list(range(total_frames))
    else:
        # floor((k + 0.5) * step) < total  <=>  k < total / step - 0.5; compute, then trim float edge cases.
        count = max(0, math.ceil(total_frames / step - 0.5) + 1)
        indices = [int(math.floor((k + 0.5) * step)) for k in range(count)]
        indices = [index for index in indices if index < total_frames]
        if not indices:
            indices = [total_frames // 2]
    if max_frames is not None and len(indices) > max_frames:
        return sample_uniform_indices(total_frames, max_frames)
    return indices


def frame_range_for_bound(
    bound: tuple[float, float], fps: float, total_frames: int
) -> tuple[int, int]:
    """Frames ``[start, end)`` of a video that lie in the time window ``bound = (start_sec, end_sec)``.

    ``start = max(0, round(start_sec * fps))`` and ``end = min(total_frames, round(end_sec * fps) + 1)``:
    the frames shown at both ends of the window are included (``round`` is Python's, half to even, as in
    VideoChat2's MVBench loader). A negative start is clamped to 0 and an end past the video to its last
    frame (MVBench uses such open bounds).

    Args:
        bound: ``(start_sec, end_sec)`` with ``start_sec <= end_sec``.
        fps: Frame rate of the video.
        total_frames: Number of frames in the video.

    Returns:
        ``(start, end)`` with ``0 <= start < end <= total_frames``.

    Raises:
        ValueError: If the bound is malformed, reversed, or starts after the end of the video.
    """
    try:
        start_sec, end_sec = (float(value) for value in bound)
    except (TypeError, ValueError):
        raise ValueError(f"bound must be (start_sec, end_sec), got {bound!r}") from None
    if not (math.isfinite(start_sec) and math.isfinite(end_sec)) or start_sec > end_sec:
        raise ValueError(f"bound must be finite with start_sec <= end_sec, got {bound!r}")
    fps = _positive_float("fps", fps)
    total_frames = _positive_int("total_frames", total_frames)
    start = max(0, round(start_sec * fps))
    end = min(total_frames, round(end_sec * fps) + 1)
    if start >= total_frames or end <= start:
        raise ValueError(
            f"bound {bound!r} s is outside the video ({total_frames} frames at {fps:g} fps = "
            f"{total_frames / fps:.2f} s)"
        )
    return start, end


def _select_indices(
    total_frames: int,
    fps: float,
    num_frames: int,
    sampling: str,
    target_fps: float | None,
    max_frames: int | None,
    bound: tuple[float, float] | None,
) -> list[int]:
    """Apply the sampling rule to a video with ``total_frames`` frames at ``fps``."""
    start, end = (0, total_frames) if bound is None else frame_range_for_bound(bound, fps, total_frames)
    if sampling == "uniform":
        local = sample_uniform_indices(end - start, num_frames)
    else:  # "fps", validated by the caller
        local = sample_fps_indices(end - start, fps, target_fps, max_frames)
    return [start + index for index in local]


# --------------------------------------------------------------------------------------------------
# Images and frame folders
# --------------------------------------------------------------------------------------------------


def _short(error: BaseException) -> str:
    """One line describing an exception from a decoding library (decord's carry C++ stack traces)."""
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    if len(message) > _MAX_REASON_CHARS:
        message = message[:_MAX_REASON_CHARS] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as RGB.

    Args:
        path: Image file (anything PIL reads; palette and alpha images are converted to RGB).

    Returns:
        The decoded image in RGB mode.

    Raises:
        MediaLoadError: If the file is missing, a folder, empty, not an image, or corrupt/truncated.
    """
    path = Path(path)
    if not path.exists():
        raise MediaLoadError(path, "file not found")
    if path.is_dir():
        raise MediaLoadError(path, "is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise MediaLoadError(path, "file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise MediaLoadError(path, f"cannot decode image ({_short(error)})") from error


_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str) -> tuple:
    # "frame10.jpg" -> ((1, "frame"), (0, 10), (1, ".jpg")): digit runs compare as numbers. Tags keep the
    # tuple comparable; the raw name breaks ties ("01.jpg" vs "1.jpg").
    parts = tuple((0, int(part)) if part.isdigit() else (1, part.lower()) for part in _DIGITS.split(name) if part)
    return parts, name


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """The frame files of a frame folder, in natural order.

    Takes the files whose suffix is in ``IMAGE_EXTENSIONS`` (any case), ignoring hidden files and
    subfolders. Names are sorted naturally: runs of digits compare as numbers, so ``1.jpg, 2.jpg,
    10.jpg`` (a plain string sort would give ``1, 10, 2``) and ``img_9.png, img_10.png``; zero-padded
    names (``00001.jpg``) sort the same either way.

    Args:
        folder: The frame folder.

    Returns:
        Paths of the frames, first frame first.

    Raises:
        MediaLoadError: If ``folder`` is not a directory or holds no frame files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaLoadError(folder, "not a directory")
    files = [
        entry
        for entry in folder.iterdir()
        if entry.suffix.lower() in IMAGE_EXTENSIONS and not entry.name.startswith(".") and entry.is_file()
    ]
    if not files:
        raise MediaLoadError(
            folder, f"frame folder has no image files (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return sorted(files, key=lambda entry: _natural_key(entry.name))


# --------------------------------------------------------------------------------------------------
# Readers: one per kind of source, each with num_frames, fps and get_frames(indices)
# --------------------------------------------------------------------------------------------------


class _FolderReader:
    def __init__(self, folder: Path, fps: float) -> None:
        self.files = list_frame_files(folder)
        self.num_frames = len(self.files)
        self.fps = _positive_float("folder_fps", fps)

    def get_frames(self, indices: Sequence[int], output: str = "pil") -> list:
        frames = [load_image(self.files[index]) for index in indices]
        return frames if output == "pil" else [np.asarray(frame) for frame in frames]


class _GifReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with Image.open(path) as image:
                self.num_frames = int(getattr(image, "n_frames", 1))
                durations = []
                for index in range(self.num_frames):
                    image.seek(index)
                    durations.append(float(image.info.get("duration") or 0))
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise MediaLoadError(path, f"cannot decode GIF ({_short(error)})") from error
        mean_ms = sum(durations) / len(durations) if durations else 0.0
        self.fps = 1000.0 / mean_ms if mean_ms > 0 else DEFAULT_GIF_FPS

    def get_frames(self, indices: Sequence[int], output: str = "pil") -> list:
        frames: dict[int, Image.Image] = {}
        try:
            with Image.open(self.path) as image:
                # GIF frames are deltas on the previous one, so seek in increasing order.
                for index in sorted(set(indices)):
                    image.seek(index)
                    frames[index] = image.convert("RGB")
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise MediaLoadError(self.path, f"cannot decode GIF ({_short(error)})") from error
        if output == "numpy":
            return [np.asarray(frames[index]) for index in indices]
        return [frames[index] for index in indices]


class _DecordReader:
    """decord 0.6: random access through the container index, batch decode."""

    def __init__(self, path: Path, num_threads: int) -> None:
        import decord  # ImportError is handled by the caller (fallback or a clear message)

        self.reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
        self.num_frames = len(self.reader)
        self.fps = float(self.reader.get_avg_fps())

    def get_frames(self, indices: Sequence[int], output: str = "pil") -> list:
        batch = self.reader.get_batch(list(indices)).asnumpy()  # [n, H, W, 3] uint8 RGB
        if batch.shape[0] != len(indices):
            raise RuntimeError(f"decord returned {batch.shape[0]} frames for {len(indices)} indices")
        if output == "numpy":
            return batch  # [n, H, W, 3]: a sequence of frames, kept as one array (no per-frame copies)
        return [Image.fromarray(np.ascontiguousarray(frame)) for frame in batch]


class _PyAVReader:
    """PyAV: decode sequentially from the start, keeping the sampled frames.

    No seeking: a seek lands on a keyframe and leaves the frame number unknown, so frame indices would
    depend on the GOP; counting decoded frames from the start matches decord's numbering.
    """

    def __init__(self, path: Path, num_threads: int) -> None:
        import av  # ImportError is handled by the caller

        self.path = path
        self.num_threads = num_threads
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise RuntimeError("no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            self.num_frames = int(stream.frames or 0)
            if self.num_frames <= 0:
                # Some containers (webm, mkv) store no frame count: count the packets instead of decoding.
                self.num_frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
            if rate:
                self.fps = float(rate)
            elif stream.duration and stream.time_base and self.num_frames:
                self.fps = self.num_frames / float(stream.duration * stream.time_base)
            else:
                raise RuntimeError("cannot determine the frame rate")

    def get_frames(self, indices: Sequence[int], output: str = "pil") -> list:
        import av

        wanted = set(indices)
        last = max(indices)
        frames: dict[int, Image.Image | np.ndarray] = {}
        decoded = 0
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.num_threads > 0:
                stream.codec_context.thread_count = self.num_threads
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                if index in wanted:
                    frames[index] = _displayed(frame, output)
                if index >= last:
                    break
        if decoded <= last:
            raise RuntimeError(
                f"decoded only {decoded} of {self.num_frames} frames but frame {last} was sampled "
                "(truncated or corrupt file?)"
            )
        return [frames[index] for index in indices]


def _displayed(frame, output: str) -> Image.Image | np.ndarray:
    """A PyAV frame as it is displayed: turned by its display matrix (``frame.rotation``, degrees counter-clockwise,
    PyAV >= 14.1), as decord and the ``ffmpeg`` CLI turn it. A phone records portrait video as landscape pixels
    plus a 90-degree matrix. Rotations are rounded to quarter turns; mirroring matrices are not applied. PIL's
    transpose does the turn: about 1-3 ms per 640x360 frame here (a numpy ``rot90`` copy: 14 ms), so 96 sampled
    frames of a rotated clip decode in 350-380 ms CPU against 255-320 ms unrotated (decord: 343 against 296).

    Memory: one decoded frame and its turned copy at a time, besides the frames kept."""
    turns = round(frame.rotation / 90) % 4
    if not turns:
        return frame.to_image() if output == "pil" else frame.to_ndarray(format="rgb24")
    upright = frame.to_image().transpose(_QUARTER_TURNS[turns])  # [H', W'] RGB
    return upright if output == "pil" else np.asarray(upright).copy()  # writable, as decord's and to_ndarray's


# counter-clockwise quarter turns -> PIL's transpose (its ROTATE_* turn counter-clockwise too)
_QUARTER_TURNS = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_270}


_VIDEO_READERS: dict[str, Callable[[Path, int], object]] = {"decord": _DecordReader, "pyav": _PyAVReader}
_INSTALL_HINTS = {"decord": "pip install decord==0.6.0", "pyav": "pip install av"}


def _check_source(path: Path) -> None:
    if not path.exists():
        raise MediaLoadError(path, "file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise MediaLoadError(path, "file is empty (0 bytes)")


def _backend_names(backend: str) -> list[str]:
    if backend not in VIDEO_BACKENDS:
        raise ValueError(f"backend must be one of {VIDEO_BACKENDS}, got {backend!r}")
    return ["decord", "pyav"] if backend == "auto" else [backend]


def _read_video_file(
    path: Path,
    backend: str,
    num_threads: int,
    select: Callable[[int, float], list[int]] | None,
    output: str = "pil",
) -> tuple[list, list[int], int, float]:
    """Open ``path`` with each backend in turn; return (frames, indices, total_frames, fps).

    ``select`` maps (total_frames, fps) to the indices to decode; ``None`` only reads the metadata. Errors
    from ``select`` (a bad bound) are the caller's and propagate at once; decoding errors move on to the
    next backend and are reported together if all fail.
    """
    failures = []
    for name in _backend_names(backend):
        try:
            reader = _VIDEO_READERS[name](path, num_threads)
        except ImportError as error:
            if backend != "auto":
                raise ImportError(f"video backend {name!r} is not installed; {_INSTALL_HINTS[name]}") from error
            failures.append(f"{name}: not installed")
            continue
        except Exception as error:  # noqa: BLE001 - decord/FFmpeg raise many types; all mean "cannot read"
            failures.append(f"{name}: {_short(error)}")
            continue
        if reader.num_frames <= 0:
            failures.append(f"{name}: the video has no frames")
            continue
        if select is None:
            return [], [], reader.num_frames, reader.fps
        indices = select(reader.num_frames, reader.fps)
        try:
            frames = reader.get_frames(indices, output)
        except Exception as error:  # noqa: BLE001 - see above
            failures.append(f"{name}: {_short(error)}")
            continue
        return frames, indices, reader.num_frames, reader.fps
    raise MediaLoadError(path, "cannot decode video (" + "; ".join(failures) + ")")


def _open_non_video_file(path: Path, folder_fps: float) -> _FolderReader | _GifReader | None:
    if path.is_dir():
        return _FolderReader(path, folder_fps)
    if path.suffix.lower() == ".gif":
        return _GifReader(path)
    return None


# --------------------------------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------------------------------


def get_video_info(
    path: str | os.PathLike, *, backend: VideoReaderBackend = "auto", folder_fps: float = 1.0
) -> tuple[int, float]:
    """Number of frames and frame rate of a video file, frame folder or GIF, without decoding frames.

    Args:
        path: The video.
        backend: Decoder for video files (see :data:`VideoReaderBackend`).
        folder_fps: Frame rate reported for a frame folder.

    Returns:
        ``(num_frames, fps)``.

    Raises:
        MediaLoadError: If the video cannot be read or has no frames.
    """
    path = Path(path)
    _check_source(path)
    reader = _open_non_video_file(path, folder_fps)
    if reader is not None:
        return reader.num_frames, reader.fps
    _, _, total_frames, fps = _read_video_file(path, backend, 0, None)
    return total_frames, fps


def load_video_clip(
    path: str | os.PathLike,
    num_frames: int = 16,
    sampling: Literal["uniform", "fps"] = "uniform",
    target_fps: float | None = None,
    max_frames: int | None = None,
    num_threads: int = 0,
    bound: tuple[float, float] | None = None,
    *,
    backend: VideoReaderBackend = "auto",
    folder_fps: float = 1.0,
    output: Literal["pil", "numpy"] = "pil",
) -> VideoClip:
    """Sample and decode frames of a video; like :func:`load_video` but also returns indices and fps.

    Args: see :func:`load_video`.

    Returns:
        A :class:`VideoClip`.

    Raises:
        MediaLoadError: If the video cannot be read, or ``bound`` lies outside it.
        ValueError: On invalid sampling arguments.
        ImportError: If the ``backend`` asked for by name is not installed.
    """
    if sampling not in ("uniform", "fps"):
        raise ValueError(f"sampling must be 'uniform' or 'fps', got {sampling!r}")
    num_frames = _positive_int("num_frames", num_frames)
    if sampling == "fps":
        if target_fps is None:
            raise ValueError("sampling='fps' needs target_fps")
        target_fps = _positive_float("target_fps", target_fps)
        max_frames = num_frames if max_frames is None else _positive_int("max_frames", max_frames)
    if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 0:
        raise ValueError(f"num_threads must be an integer >= 0 (0 = automatic), got {num_threads!r}")
    if output not in ("pil", "numpy"):
        raise ValueError(f"output must be 'pil' or 'numpy', got {output!r}")

    path = Path(path)

    def select(total: int, fps: float) -> list[int]:
        try:
            return _select_indices(total, fps, num_frames, sampling, target_fps, max_frames, bound)
        except ValueError as error:
            raise MediaLoadError(path, str(error)) from error

    return decode_selected_frames(
        path, select, backend=backend, num_threads=num_threads, folder_fps=folder_fps, output=output
    )


def decode_selected_frames(
    path: str | os.PathLike,
    select: Callable[[int, float], list[int]],
    *,
    backend: VideoReaderBackend = "auto",
    num_threads: int = 0,
    folder_fps: float = 1.0,
    output: Literal["pil", "numpy"] = "pil",
) -> VideoClip:
    """Decode the frames that ``select(total_frames, fps)`` picks from a video file, frame folder or GIF.

    :func:`load_video_clip` calls it with this module's samplers; call it directly for frame rules that
    depend on the video's length and frame rate in other ways (e.g. VideoChat2's MVBench rule). Same backends,
    fallback and errors as :func:`load_video`.

    Raises:
        MediaLoadError: If the video cannot be read (``select`` may raise it too, e.g. for a bad bound).
    """
    path = Path(path)
    _check_source(path)
    reader = _open_non_video_file(path, folder_fps)
    if reader is None:
        frames, indices, total_frames, fps = _read_video_file(path, backend, num_threads, select, output)
    else:
        indices = select(reader.num_frames, reader.fps)
        frames, total_frames, fps = reader.get_frames(indices, output), reader.num_frames, reader.fps
    if len(frames) != len(indices):  # defensive: every reader checks this already
        raise MediaLoadError(path, f"decoded {len(frames)} frames but sampled {len(indices)}")
    return VideoClip(frames=frames, indices=indices, fps=fps, total_frames=total_frames)


def load_video(
    path: str | os.PathLike,
    num_frames: int = 16,
    sampling: Literal["uniform", "fps"] = "uniform",
    target_fps: float | None = None,
    max_frames: int | None = None,
    num_threads: int = 0,
    bound: tuple[float, float] | None = None,
    *,
    backend: VideoReaderBackend = "auto",
    folder_fps: float = 1.0,
    output: Literal["pil", "numpy"] = "pil",
) -> list[Image.Image] | list[np.ndarray]:
    """Sample and decode frames of a video file, frame folder or GIF.

    Args:
        path: A video file, a folder of frames (see :func:`list_frame_files`) or a ``.gif``.
        num_frames: Frames to sample with ``uniform``; with ``fps``, the cap when ``max_frames`` is None.
        sampling: ``"uniform"`` (:func:`sample_uniform_indices`) or ``"fps"`` (:func:`sample_fps_indices`).
        target_fps: Sampling rate for ``"fps"`` (required there, ignored otherwise).
        max_frames: Most frames for ``"fps"``; defaults to ``num_frames``.
        num_threads: Decoder threads; 0 lets the decoder choose.
        bound: Optional ``(start_sec, end_sec)``: sample only inside this window
            (:func:`frame_range_for_bound`), e.g. MVBench's per-question bounds.
        backend: Decoder for video files: ``"auto"`` (decord, then PyAV if decord is missing or fails),
            ``"decord"`` or ``"pyav"``.
        folder_fps: Frame rate of a frame folder (used by ``fps`` sampling and ``bound``).
        output: ``"pil"`` (RGB PIL images) or ``"numpy"`` (``[H, W, 3]`` uint8 RGB arrays, no PIL round
            trip for video files: what the training dataset uses).

    Returns:
        The sampled frames, in temporal order; exactly as many as sampled.

    Raises:
        MediaLoadError: If the video is missing, empty, not a video, corrupt, truncated before a sampled
            frame, has no frames, or ``bound`` lies outside it.
        ValueError: On invalid sampling arguments.
        ImportError: If the ``backend`` asked for by name is not installed.
    """
    return load_video_clip(
        path,
        num_frames=num_frames,
        sampling=sampling,
        target_fps=target_fps,
        max_frames=max_frames,
        num_threads=num_threads,
        bound=bound,
        backend=backend,
        folder_fps=folder_fps,
        output=output,
    ).frames


# --------------------------------------------------------------------------------------------------
# A dataset's sampling settings, shared by training and the data validator
# --------------------------------------------------------------------------------------------------

SAMPLINGS: tuple[str, ...] = ("uniform", "fps")


@dataclass(frozen=True)
class FrameSampling:
    """How a dataset takes frames from its media: one object used by training and by the validator.

    Attributes:
        num_frames: Frames per video with ``uniform`` sampling.
        sampling: ``"uniform"`` or ``"fps"`` (see the module docstring).
        target_fps: Sampling rate for ``"fps"``.
        max_frames: Most frames with ``"fps"`` (``None``: ``num_frames``).
        num_threads: Decoder threads per video (0: the decoder's default).
        folder_fps: Frame rate assumed for frame folders (``fps`` sampling).
        backend: Video file decoder, see :data:`VideoReaderBackend`.
    """

    num_frames: int = 16
    sampling: str = "uniform"
    target_fps: float | None = None
    max_frames: int | None = None
    num_threads: int = 0
    folder_fps: float = 1.0
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        _positive_int("num_frames", self.num_frames)
        if self.sampling == "fps":
            if self.target_fps is None:
                raise ValueError("sampling='fps' needs target_fps > 0")
            _positive_float("target_fps", self.target_fps)
        if self.max_frames is not None:
            _positive_int("max_frames", self.max_frames)
        if not isinstance(self.num_threads, int) or isinstance(self.num_threads, bool) or self.num_threads < 0:
            raise ValueError(f"num_threads must be an integer >= 0 (0 = automatic), got {self.num_threads!r}")
        _positive_float("folder_fps", self.folder_fps)
        _backend_names(self.backend)

    def frame_budget(self, num_frames: int | None = None) -> int:
        """Most frames one video can give (``num_frames`` is a record's override)."""
        if self.sampling == "uniform":
            return num_frames or self.num_frames
        return num_frames or self.max_frames or self.num_frames

    def load(
        self,
        path: str | os.PathLike,
        kind: Literal["video", "image"] = "video",
        num_frames: int | None = None,
        output: Literal["pil", "numpy"] = "pil",
    ) -> VideoClip:
        """Decode the frames of one image or video that this sampling takes.

        Args:
            path: Image file, or video file / frame folder / GIF.
            kind: ``"image"`` (one frame) or ``"video"``.
            num_frames: A record's own frame count: replaces ``num_frames`` with ``uniform`` and
                ``max_frames`` with ``fps`` sampling.
            output: ``"pil"`` or ``"numpy"`` frames.

        Returns:
            A :class:`VideoClip` (an image is a one-frame clip at index 0).

        Raises:
            MediaLoadError: If the media cannot be read.
        """
        if kind == "image":
            image = load_image(path)
            frame = image if output == "pil" else np.asarray(image)
            return VideoClip(frames=[frame], indices=[0], fps=1.0, total_frames=1)
        if kind != "video":
            raise ValueError(f"kind must be 'video' or 'image', got {kind!r}")
        return load_video_clip(
            path,
            num_frames=num_frames or self.num_frames,
            sampling=self.sampling,
            target_fps=self.target_fps,
            max_frames=(num_frames or self.max_frames) if self.sampling == "fps" else None,
            num_threads=self.num_threads,
            backend=self.backend,
            folder_fps=self.folder_fps,
            output=output,
        )
