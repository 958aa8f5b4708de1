"""Video-CCAM models: ``hf/`` (the self-contained Hugging Face files copied beside exported weights: the CCAM
projector, the config, the model and the shared token constants), ``videoccam_model.py`` (the xtuner/mmengine
training model), ``from_hf.py`` (builders that start a fine-tuning from a converted folder) and
``gpu_options.py`` (start-up checks of GPU-only settings). Importing this package imports nothing.
"""
