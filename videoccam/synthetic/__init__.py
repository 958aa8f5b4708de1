"""Synthetic data, generated offline and deterministically: nothing is downloaded.

``shapes.py`` (the coloured-shapes video/image/text QA dataset of the tiny configs), ``tiny_models.py`` (tiny
random SigLIP / Qwen2 / Phi-3 with tokenizers trained on that dataset's text), ``example_data.py`` (the media of
data/example/), ``benchmarks.py`` (tiny copies of the MVBench, Video-MME, MLVU and VideoVista layouts) and
``video_writer.py`` (the one mp4 writer they all use). The ``tools/make_*.py`` scripts are their command lines.
"""
