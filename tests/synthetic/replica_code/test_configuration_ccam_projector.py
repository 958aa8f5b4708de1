"""videoccam/synthetic/replica_code/configuration_ccam_projector.py: the replica projector's config has the
released field names, not the project's, and the project's projector ``model_type``."""

from videoccam.model.hf.ccam_projector import CCAMProjectorConfig
from videoccam.synthetic.replica_code.configuration_ccam_projector import CCAMConfig


def test_released_field_names_and_the_same_model_type():
    config = CCAMConfig()
    ours = CCAMProjectorConfig()
    assert config.model_type == ours.model_type == "ccam_projector"
    assert hasattr(config, "num_query") and not hasattr(config, "num_queries")
    assert not hasattr(ours, "num_query") and hasattr(ours, "num_queries")
    assert CCAMConfig.from_dict(config.to_dict()).num_key_value_heads == config.num_key_value_heads
