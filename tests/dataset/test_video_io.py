"""Tests for videoccam/dataset/video_io.py: exact sampling rules, decoding of every source kind, errors.

Test media are written into tmp folders by module-scoped fixtures (nothing binary is checked in):
* a "counter" video whose frame t shows t as 7 black/white blocks, so a test can read back which source
  frame the loader returned, for both decoders;
* a synthetic shapes video (videoccam/synthetic/shapes.py) with known shapes, colours and frames.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videoccam.dataset import video_io
from videoccam.dataset.video_io import (
    MediaLoadError,
    frame_range_for_bound,
    get_video_info,
    list_frame_files,
    load_image,
    load_video,
    load_video_clip,
    sample_fps_indices,
    sample_uniform_indices,
)
from videoccam.synthetic import shapes as synthetic
from videoccam.synthetic.video_writer import write_mp4

BACKENDS = ("decord", "pyav")


# --------------------------------------------------------------------------------------------------
# Sampling rules, written out by hand
# --------------------------------------------------------------------------------------------------


def test_uniform_100_frames_16_samples():
    # edges 0 6 12 18 25 31 37 43 50 56 62 68 75 81 87 93 100 -> midpoints
    assert sample_uniform_indices(100, 16) == [3, 9, 15, 21, 28, 34, 40, 46, 53, 59, 65, 71, 78, 84, 90, 96]


@pytest.mark.parametrize(
    ("total", "num", "expected"),
    [
        (10, 4, [1, 3, 6, 8]),  # edges 0 2 5 7 10
        (7, 1, [3]),
        (32, 16, [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31]),
        (17, 16, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16]),  # edges 0..15, 17: last is (15+17)//2
    ],
)
def test_uniform_small_cases(total, num, expected):
    assert sample_uniform_indices(total, num) == expected


@pytest.mark.parametrize(("total", "num"), [(5, 16), (16, 16), (1, 4)])
def test_uniform_short_video_gives_every_frame(total, num):
    assert sample_uniform_indices(total, num) == list(range(total))


@pytest.mark.parametrize(("total", "num"), [(0, 16), (-3, 16), (100, 0), (100, -1), (10.5, 4), (True, 4), ("9", 4)])
def test_uniform_rejects_bad_counts(total, num):
    with pytest.raises(ValueError, match="positive integer"):
        sample_uniform_indices(total, num)


@pytest.mark.parametrize(
    ("total", "video_fps", "target_fps", "max_frames", "expected"),
    [
        (100, 30, 1, None, [15, 45, 75]),  # step 30: 15, 45, 75 (105 is past the end)
        (100, 25, 2, None, [6, 18, 31, 43, 56, 68, 81, 93]),  # step 12.5: floor(6.25), floor(18.75), ...
        (100, 25, 2, 8, [6, 18, 31, 43, 56, 68, 81, 93]),  # exactly max_frames: kept
        (100, 25, 2, 4, [12, 37, 62, 87]),  # 8 > 4: uniform fallback, edges 0 25 50 75 100
        (60, 29.97, 1, 16, [14, 44]),  # floor(14.985), floor(44.955)
        (10, 30, 1, 8, [5]),  # shorter than half an interval: the middle frame
        (5, 10, 20, None, [0, 1, 2, 3, 4]),  # target above the video rate: every frame
        (5, 10, 20, 3, [0, 2, 4]),  # ... capped: uniform, edges 0 1 3 5
    ],
)
def test_fps_indices(total, video_fps, target_fps, max_frames, expected):
    assert sample_fps_indices(total, video_fps, target_fps, max_frames) == expected


@pytest.mark.parametrize(
    "args", [(0, 30, 1, 8), (100, 0, 1, 8), (100, 30, -1, 8), (100, 30, float("nan"), 8), (100, 30, 1, 0)]
)
def test_fps_indices_rejects_bad_arguments(args):
    with pytest.raises(ValueError, match="positive"):
        sample_fps_indices(*args)


def test_frame_range_for_bound():
    assert frame_range_for_bound((1.0, 2.0), 25, 100) == (25, 51)  # both end frames included
    assert frame_range_for_bound((-100000, 100000), 25, 100) == (0, 100)  # open bound: whole video
    assert frame_range_for_bound((3.0, 3.0), 25, 100) == (75, 76)  # one instant: one frame
    with pytest.raises(ValueError, match="outside the video"):
        frame_range_for_bound((5.0, 6.0), 25, 100)  # starts at frame 125 of 100
    with pytest.raises(ValueError, match="start_sec <= end_sec"):
        frame_range_for_bound((2.0, 1.0), 25, 100)
    with pytest.raises(ValueError, match="bound must be"):
        frame_range_for_bound((1.0,), 25, 100)


# --------------------------------------------------------------------------------------------------
# Test media
# --------------------------------------------------------------------------------------------------

COUNTER_FRAMES, COUNTER_FPS, BITS = 100, 25, 7


def _counter_frame(t: int) -> np.ndarray:
    """64x64 frame showing t in binary: bit b is column block b (8 px wide) of the top half, white = 1."""
    frame = np.full((64, 64, 3), 128, dtype=np.uint8)
    for bit in range(BITS):
        frame[:32, bit * 8 : bit * 8 + 8] = 255 if (t >> bit) & 1 else 0
    return frame


def _read_counter(frame: Image.Image) -> int:
    pixels = np.asarray(frame, dtype=np.float32)
    return sum(1 << bit for bit in range(BITS) if pixels[4:28, bit * 8 + 2 : bit * 8 + 6].mean() > 128)


# A shapes video with hand-picked events: 3 shapes over 32 frames -> frames [0, 10), [10, 21), [21, 32).
SHAPE_EVENTS = [
    synthetic.ShapeEvent("red", "square", 0, 10, (20.0, 20.0), (24.0, 22.0), 11),
    synthetic.ShapeEvent("green", "circle", 10, 21, (44.0, 40.0), (40.0, 44.0), 11),
    synthetic.ShapeEvent("blue", "triangle", 21, 32, (30.0, 34.0), (34.0, 30.0), 11),
]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    paths = {"counter": root / "counter.mp4", "shapes": root / "shapes.mp4"}
    counter = np.stack([_counter_frame(t) for t in range(COUNTER_FRAMES)])
    write_mp4(counter, paths["counter"], COUNTER_FPS, encoder="pyav")
    scene = synthetic.VideoScene("shapes", "shapes.mp4", num_frames=32, fps=8, size=64, events=SHAPE_EVENTS)
    write_mp4(synthetic.render_video(scene), paths["shapes"], scene.fps, encoder="pyav")

    data = paths["shapes"].read_bytes()
    broken = {
        "zero_bytes.mp4": b"",
        "truncated_half.mp4": data[: len(data) // 2],
        "truncated_header.mp4": data[:200],
        "text.mp4": b"this is a text file, not a video\n" * 20,
        "corrupt.jpg": bytes(range(256)) * 4,
        "truncated.jpg": b"",  # filled below
    }
    jpeg = root / "good.jpg"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(jpeg, quality=95)
    broken["truncated.jpg"] = jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2]
    for name, content in broken.items():
        paths[name] = root / name
        paths[name].write_bytes(content)

    # Frame folders: natural order, non-image and hidden files ignored.
    paths["named_folder"] = root / "named_folder"
    paths["named_folder"].mkdir()
    for name, color in (("1.png", (255, 0, 0)), ("2.png", (0, 255, 0)), ("10.png", (0, 0, 255))):
        Image.new("RGB", (32, 32), color).save(paths["named_folder"] / name)
    (paths["named_folder"] / "notes.txt").write_text("not a frame")
    Image.new("RGB", (32, 32), (255, 255, 255)).save(paths["named_folder"] / ".hidden.png")

    paths["gray_folder"] = root / "gray_folder"  # frame i has gray level 20 * i, at 4 fps
    paths["gray_folder"].mkdir()
    for i in range(12):
        Image.new("L", (16, 16), 20 * i).save(paths["gray_folder"] / f"frame_{i}.PNG")

    paths["empty_folder"] = root / "empty_folder"
    paths["empty_folder"].mkdir()
    (paths["empty_folder"] / "readme.txt").write_text("no frames here")

    paths["gif"] = root / "anim.gif"
    gif_colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255)]
    gif_frames = [Image.new("RGB", (16, 16), color) for color in gif_colors]
    gif_frames[0].save(paths["gif"], save_all=True, append_images=gif_frames[1:], duration=100, loop=0)
    return paths


# --------------------------------------------------------------------------------------------------
# Video files
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_info(media, backend):
    assert get_video_info(media["counter"], backend=backend) == (COUNTER_FRAMES, COUNTER_FPS)
    assert get_video_info(media["shapes"], backend=backend) == (32, 8.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_uniform_decodes_the_sampled_frames(media, backend):
    clip = load_video_clip(media["counter"], num_frames=16, backend=backend)
    assert clip.indices == [3, 9, 15, 21, 28, 34, 40, 46, 53, 59, 65, 71, 78, 84, 90, 96]
    assert [_read_counter(frame) for frame in clip.frames] == clip.indices
    assert (clip.total_frames, clip.fps) == (COUNTER_FRAMES, COUNTER_FPS)
    assert all(frame.mode == "RGB" and frame.size == (64, 64) for frame in clip.frames)
    assert clip.timestamps[:2] == [3 / 25, 9 / 25]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_sampling_decodes_the_sampled_frames(media, backend):
    frames = load_video(media["counter"], sampling="fps", target_fps=2, max_frames=16, backend=backend)
    assert [_read_counter(frame) for frame in frames] == [6, 18, 31, 43, 56, 68, 81, 93]
    # max_frames defaults to num_frames; 8 samples > 4 -> uniform over the whole video
    frames = load_video(media["counter"], num_frames=4, sampling="fps", target_fps=2, backend=backend)
    assert [_read_counter(frame) for frame in frames] == [12, 37, 62, 87]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bound_restricts_sampling_to_the_window(media, backend):
    # (1 s, 2 s) at 25 fps -> frames [25, 51): 26 frames, edges 0 3 6 9 13 16 19 22 26 -> midpoints + 25
    clip = load_video_clip(media["counter"], num_frames=8, bound=(1.0, 2.0), backend=backend)
    assert clip.indices == [26, 29, 32, 36, 39, 42, 45, 49]
    assert [_read_counter(frame) for frame in clip.frames] == clip.indices
    clip = load_video_clip(media["counter"], sampling="fps", target_fps=5, bound=(1.0, 2.0), backend=backend)
    assert clip.indices == [27, 32, 37, 42, 47]  # step 5 inside the window: 2, 7, 12, 17, 22 (+ 25)


def test_bound_outside_the_video_is_a_media_error(media):
    with pytest.raises(MediaLoadError, match="outside the video") as info:
        load_video(media["counter"], bound=(10.0, 12.0))
    assert info.value.path == str(media["counter"])


def _nearest_color(pixel: np.ndarray) -> str:
    palette = {**synthetic.COLORS, "background": synthetic.BACKGROUND}
    return min(palette, key=lambda name: float(np.sum((pixel - np.array(palette[name])) ** 2)))


def _color_at(frame: Image.Image, center: tuple[float, float]) -> str:
    x, y = round(center[0]), round(center[1])
    return _nearest_color(np.asarray(frame, dtype=np.float32)[y - 1 : y + 2, x - 1 : x + 2].mean(axis=(0, 1)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_shapes_video_colours_appear_in_their_frames(media, backend):
    frames = load_video(media["shapes"], num_frames=32, backend=backend)
    assert len(frames) == 32  # every frame
    for event in SHAPE_EVENTS:
        for t in (event.start_frame, (event.start_frame + event.end_frame) // 2, event.end_frame - 1):
            assert _color_at(frames[t], event.center_at(t)) == event.color, (event, t)
            for other in SHAPE_EVENTS:  # the other shapes are not on screen yet / any more
                if other is not event and _color_at(frames[t], other.center_at(t)) == other.color:
                    span = f"{other.start_frame}-{other.end_frame}"
                    pytest.fail(f"{other.name} visible in frame {t}, outside its frames {span}")


def test_decord_and_pyav_return_the_same_frames(media):
    for path in (media["shapes"], media["counter"]):
        by_decord = load_video(path, num_frames=16, backend="decord")
        by_pyav = load_video(path, num_frames=16, backend="pyav")
        for a, b in zip(by_decord, by_pyav, strict=True):
            assert np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max() <= 3


def _with_display_rotation(source: Path, out: Path, degrees: int) -> Path:
    """``source`` remuxed with a display matrix of ``degrees`` counter-clockwise (what a phone writes for portrait
    video): the ffmpeg of imageio-ffmpeg (test extra), stream copy, so the pixels are the same bitstream."""
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-display_rotation",
                    str(degrees), "-i", str(source), "-c", "copy", str(out)], check=True, timeout=60)  # fmt: skip
    return out


@pytest.mark.parametrize("degrees, quarter_turns", [(90, 1), (-90, 3), (180, 2)])
def test_rotated_phone_video_decodes_as_displayed_by_both_backends(tmp_path, degrees, quarter_turns):
    """decord (and the ffmpeg CLI) apply the display matrix; PyAV gives the stored pixels and frame.rotation.
    Both backends must return the displayed frame: the stored one turned counter-clockwise by ``degrees``."""
    # [20, 32, 64, 3]: landscape, as a phone stores it (decord 0.6 fails on some rotated sizes, e.g. 64x48: the
    # default backend then falls back to PyAV, which must turn it the same way)
    stored = np.stack([_counter_frame(t)[:32] for t in range(20)])
    stored[:, 24:, 56:] = (255, 0, 0)  # a red corner off the bit blocks: a mirror would be caught, not only the shape
    plain = tmp_path / "plain.mp4"
    write_mp4(stored, plain, 10, encoder="pyav")
    rotated = _with_display_rotation(plain, tmp_path / f"rotated_{degrees}.mp4", degrees)
    shown: dict[str, list[np.ndarray]] = {}
    for backend in BACKENDS:
        upright = [np.rot90(np.asarray(f), quarter_turns) for f in load_video(plain, num_frames=4, backend=backend)]
        for output in ("pil", "numpy"):
            frames = [np.asarray(f) for f in load_video(rotated, num_frames=4, backend=backend, output=output)]
            assert [f.shape for f in frames] == [u.shape for u in upright], (backend, output)
            assert all(np.array_equal(f, u) for f, u in zip(frames, upright)), (backend, output)
        shown[backend] = frames
    for a, b in zip(shown["decord"], shown["pyav"], strict=True):  # the two decoders agree within decoding noise
        assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= 3


def test_auto_falls_back_to_pyav(media, monkeypatch):
    class BrokenDecord:
        def __init__(self, path, num_threads):
            raise RuntimeError("simulated decord failure")

    monkeypatch.setitem(video_io._VIDEO_READERS, "decord", BrokenDecord)
    frames = load_video(media["counter"], num_frames=4)
    assert [_read_counter(frame) for frame in frames] == [12, 37, 62, 87]
    with pytest.raises(MediaLoadError, match="decord: RuntimeError: simulated decord failure"):
        load_video(media["counter"], num_frames=4, backend="decord")


def test_missing_decord(media, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` raise ImportError
    assert len(load_video(media["counter"], num_frames=4)) == 4  # auto: PyAV
    with pytest.raises(ImportError, match="pip install decord"):
        load_video(media["counter"], num_frames=4, backend="decord")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zero_bytes.mp4", "empty"),
        ("truncated_half.mp4", "cannot decode video"),
        ("truncated_header.mp4", "cannot decode video"),
        ("text.mp4", "cannot decode video"),
        ("missing.mp4", "file not found"),
    ],
)
def test_unreadable_videos_raise_media_load_error(media, name, reason):
    path = media.get(name, media["shapes"].parent / name)
    with pytest.raises(MediaLoadError, match=reason) as info:
        load_video(path, num_frames=16)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ")
    assert isinstance(info.value, ValueError)
    if name == "truncated_half.mp4":
        # get_video_info reads the container's index only: intact here, so it reports the full length.
        assert get_video_info(path) == (32, 8.0)
    else:
        with pytest.raises(MediaLoadError, match=reason):
            get_video_info(path)


def test_truncated_video_reports_both_backends(media):
    with pytest.raises(MediaLoadError) as info:
        load_video(media["truncated_half.mp4"], num_frames=16)
    assert "decord:" in info.value.reason and "pyav:" in info.value.reason


def test_invalid_sampling_arguments(media):
    with pytest.raises(ValueError, match="sampling must be"):
        load_video(media["counter"], sampling="random")
    with pytest.raises(ValueError, match="needs target_fps"):
        load_video(media["counter"], sampling="fps")
    with pytest.raises(ValueError, match="backend must be"):
        load_video(media["counter"], backend="opencv")


def test_media_load_error_pickles():
    error = pickle.loads(pickle.dumps(MediaLoadError("a/b.mp4", "file not found")))
    assert (error.path, error.reason, str(error)) == ("a/b.mp4", "file not found", "a/b.mp4: file not found")


# --------------------------------------------------------------------------------------------------
# Frame folders, GIFs, images
# --------------------------------------------------------------------------------------------------


def test_frame_folder_natural_order(media):
    assert [path.name for path in list_frame_files(media["named_folder"])] == ["1.png", "2.png", "10.png"]
    frames = load_video(media["named_folder"], num_frames=16)
    assert [frame.getpixel((5, 5)) for frame in frames] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert all(frame.mode == "RGB" for frame in frames)


def test_frame_folder_fps_and_uniform(media):
    folder = media["gray_folder"]  # frame_0.PNG .. frame_11.PNG: uppercase suffix, numbers past 9
    assert get_video_info(folder, folder_fps=4) == (12, 4.0)
    clip = load_video_clip(folder, sampling="fps", target_fps=1, folder_fps=4)
    assert clip.indices == [2, 6, 10]  # step 4
    assert [frame.getpixel((0, 0))[0] for frame in clip.frames] == [40, 120, 200]
    clip = load_video_clip(folder, num_frames=4)
    assert clip.indices == [1, 4, 7, 10]  # edges 0 3 6 9 12
    assert [frame.getpixel((0, 0))[0] for frame in clip.frames] == [20, 80, 140, 200]


def test_empty_frame_folder(media):
    with pytest.raises(MediaLoadError, match="no image files") as info:
        load_video(media["empty_folder"])
    assert info.value.path == str(media["empty_folder"])


def test_gif(media):
    assert get_video_info(media["gif"]) == (5, 10.0)  # 100 ms per frame
    frames = load_video(media["gif"], num_frames=16)
    assert [frame.getpixel((8, 8)) for frame in frames] == [
        (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255),
    ]  # fmt: skip
    clip = load_video_clip(media["gif"], num_frames=2)
    assert clip.indices == [1, 3]
    assert [frame.getpixel((8, 8)) for frame in clip.frames] == [(0, 255, 0), (255, 255, 0)]


def test_load_image(media, tmp_path):
    image = load_image(media["shapes"].parent / "good.jpg")
    assert image.mode == "RGB" and image.size == (64, 64)
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 128)).save(rgba)
    assert load_image(rgba).mode == "RGB"


@pytest.mark.parametrize(
    ("name", "reason"),
    [("corrupt.jpg", "cannot decode image"), ("truncated.jpg", "cannot decode image"),
     ("missing.jpg", "file not found"), ("zero_bytes.mp4", "empty")],
)  # fmt: skip
def test_unreadable_images_raise_media_load_error(media, name, reason):
    path = media.get(name, media["shapes"].parent / name)
    with pytest.raises(MediaLoadError, match=reason) as info:
        load_image(path)
    assert info.value.path == str(path)


def test_corrupt_frame_in_folder_names_the_frame(media, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "0.jpg")
    (folder / "1.jpg").write_bytes(media["corrupt.jpg"].read_bytes())
    with pytest.raises(MediaLoadError) as info:
        load_video(folder, num_frames=2)
    assert info.value.path == str(folder / "1.jpg")


def test_decode_selected_frames_calls_select_with_length_and_fps(tmp_path):
    from videoccam.dataset.video_io import MediaLoadError, decode_selected_frames

    frames = np.zeros((12, 32, 32, 3), dtype=np.uint8)
    for i in range(12):
        frames[i] = 20 * i  # frame i has grey level 20*i
    path = tmp_path / "grey.mp4"
    write_mp4(frames, path, fps=6, encoder="pyav")
    seen = []

    def select(total, fps):
        seen.append((total, fps))
        return [1, 10]

    clip = decode_selected_frames(path, select, output="numpy")
    assert seen == [(12, 6.0)] and clip.indices == [1, 10]
    assert [int(round(float(f.mean()) / 20)) for f in clip.frames] == [1, 10]
    with pytest.raises(MediaLoadError, match="missing.mp4"):
        decode_selected_frames(tmp_path / "missing.mp4", select)
