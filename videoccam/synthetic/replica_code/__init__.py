"""Stand-ins for the remote code that ships beside the released Video-CCAM weights (design.md section 8).

The real ``configuration_ccam_projector.py`` / ``modeling_ccam_projector.py`` (v1.0 / v1.1 ``projector/``) and
``configuration_videoccam.py`` / ``modeling_videoccam.py`` (v1.2) are not public outside the weight repositories.
These files play their part for the tiny replicas of :mod:`videoccam.synthetic.released_replicas`: written
independently of the project's own model (other class names, parameter names, config field names and module
layout; the projector is called ``projector(features, split_sizes)`` as upstream v1.0 calls it), copied beside
the replica weights and loaded only through ``trust_remote_code``. The package never imports them; the tests
use them to show that fine-tuning a released model depends on none of the project's own naming.

They import only torch, transformers and each other. This ``__init__`` is not copied and imports nothing.
"""
