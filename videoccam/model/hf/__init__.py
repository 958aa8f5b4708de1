"""The self-contained Hugging Face model files: everything in this folder is copied beside exported weights.

``constants.py``, ``ccam_projector.py``, ``configuration_videoccam.py`` and ``modeling_videoccam.py`` import only
the standard library, torch, transformers and each other (relative imports), because
``AutoModel.from_pretrained(folder, trust_remote_code=True)`` loads them where ``videoccam`` is not installed
(``tests/model/hf/test_isolation.py`` checks it). The rest of the package imports the shared constants and the
two operations training shares with the exported model (``encode_frames``, ``splice_media_embeds``) from here.
This ``__init__`` is not exported and imports nothing.
"""
