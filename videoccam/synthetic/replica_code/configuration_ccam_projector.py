"""Replica of a released projector's configuration (v1.0 / v1.1 ``projector/configuration_ccam_projector.py``).

The field names are the ones the released v1.2 ``projector_config`` shows (design.md section 8: ``num_query``,
``num_key_value_heads``, ``cross_hidden_size``, ``hidden_act``, ``mlp_bias``, ...), not the project's
``CCAMProjectorConfig`` names. ``cast_inputs=False`` gives the variant
that does not cast its input features to its own dtype (a bf16 SigLIP's features then meet fp32 weights unless the
caller casts them). ``model_type`` is deliberately the same string as the project's own projector
config, so a loader that trusted ``model_type`` instead of the folder's code would pick the wrong class.

Self-contained: imports only transformers (copied beside the weights, loaded with ``trust_remote_code``).
"""

from transformers import PretrainedConfig


class CCAMConfig(PretrainedConfig):
    model_type = "ccam_projector"

    def __init__(
        self,
        num_query=16,
        hidden_size=32,
        num_heads=4,
        num_key_value_heads=2,
        cross_hidden_size=32,
        intermediate_size=64,
        hidden_act="swiglu",
        mlp_bias=True,
        attention_bias=True,
        attention_dropout=0.0,
        dropout=0.0,
        layer_norm_eps=1e-5,
        output_size=64,
        initializer_range=0.02,
        cast_inputs=True,
        **kwargs,
    ):
        self.num_query = num_query
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_key_value_heads = num_key_value_heads
        self.cross_hidden_size = cross_hidden_size
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.mlp_bias = mlp_bias
        self.attention_bias = attention_bias
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.output_size = output_size
        self.initializer_range = initializer_range
        # False: forward() uses the features in the dtype they come in (a released projector may not cast them)
        self.cast_inputs = cast_inputs
        super().__init__(**kwargs)
