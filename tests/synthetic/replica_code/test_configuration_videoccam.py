"""videoccam/synthetic/replica_code/configuration_videoccam.py: the replica v1.2 config round-trips with nested
sub-configs and the released field names."""

from videoccam.synthetic.replica_code.configuration_videoccam import VideoCCAMConfig


def test_round_trip():
    config = VideoCCAMConfig(
        text_config={"model_type": "qwen2", "hidden_size": 64}, vision_config={"hidden_size": 32},
        projector_config={"num_query": 16}, image_token_id=3, video_token_id=4,
    )
    again = VideoCCAMConfig.from_dict(config.to_dict())
    assert again.text_config.hidden_size == 64 and again.vision_config.model_type == "siglip_vision_model"
    assert (again.image_token_id, again.video_token_id, again.projector_config) == (3, 4, {"num_query": 16})
    assert again.vision_feature_layer == -2
