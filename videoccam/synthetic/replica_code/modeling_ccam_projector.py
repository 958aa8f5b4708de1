"""Replica of a released CCAM projector (v1.0 / v1.1 ``projector/modeling_ccam_projector.py``).

An independent implementation of the published idea (learnable queries, group-causal self-attention, causal
cross-attention to the frames, SwiGLU MLP) with its own layout: grouped-query attention, a fused key/value
projection, a LayerNorm on the visual features, a fused gate/up projection, eager attention written out, one
loop iteration per video. Called as upstream v1.0 calls the released projector::

    projector(features, split_sizes)   # features [sum(split_sizes), patches, cross_hidden_size]
                                       # -> [len(split_sizes), num_query, output_size]

Query i of a T-frame video sees frames 0 .. (i * T) // num_query.

Self-contained: imports only torch, transformers and its sibling configuration file.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .configuration_ccam_projector import CCAMConfig


def _frame_of_query(num_query, num_frames, device):
    return torch.arange(num_query, device=device) * num_frames // num_query  # [N]


class GroupedAttention(nn.Module):
    def __init__(self, dim, kv_dim, num_heads, num_kv_heads, bias, dropout):
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.wq = nn.Linear(dim, num_heads * self.head_dim, bias=bias)
        self.wkv = nn.Linear(kv_dim, 2 * num_kv_heads * self.head_dim, bias=bias)
        self.wo = nn.Linear(num_heads * self.head_dim, dim, bias=bias)

    def forward(self, x, context, allowed):
        """x [1, N, dim], context [1, K, kv_dim], allowed [N, K] (True = may attend)."""
        n, k = x.shape[1], context.shape[1]
        q = self.wq(x).view(1, n, self.num_heads, self.head_dim).transpose(1, 2)
        key, value = self.wkv(context).view(1, k, 2, self.num_kv_heads, self.head_dim).unbind(2)
        repeat = self.num_heads // self.num_kv_heads
        key = key.transpose(1, 2).repeat_interleave(repeat, dim=1)
        value = value.transpose(1, 2).repeat_interleave(repeat, dim=1)
        scores = q @ key.transpose(-1, -2) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = F.dropout(scores.softmax(-1), p=self.dropout, training=self.training)
        out = (probs @ value).transpose(1, 2).reshape(1, n, -1)
        return self.wo(out)


class CCAMModel(PreTrainedModel):
    config_class = CCAMConfig
    main_input_name = "x"

    def __init__(self, config):
        super().__init__(config)
        h, c, eps = config.hidden_size, config.cross_hidden_size, config.layer_norm_eps
        self.query = nn.Parameter(torch.zeros(1, config.num_query, h))
        self.ln_self = nn.LayerNorm(h, eps=eps)
        self.self_attention = GroupedAttention(
            h, h, config.num_heads, config.num_key_value_heads, config.attention_bias, config.attention_dropout
        )
        self.ln_query = nn.LayerNorm(h, eps=eps)
        self.ln_visual = nn.LayerNorm(c, eps=eps)
        self.cross_attention = GroupedAttention(
            h, c, config.num_heads, config.num_key_value_heads, config.attention_bias, config.attention_dropout
        )
        self.ln_ffn = nn.LayerNorm(h, eps=eps)
        self.ffn_in = nn.Linear(h, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.ffn_out = nn.Linear(config.intermediate_size, h, bias=config.mlp_bias)
        self.ln_out = nn.LayerNorm(h, eps=eps)
        self.head = nn.Linear(h, config.output_size)
        self.drop = nn.Dropout(config.dropout)
        self.post_init()

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, CCAMModel):
            module.query.data.normal_(0.0, std)

    def _one_video(self, frames):
        """frames [T, P, C] -> [1, N, output_size]."""
        t, p, c = frames.shape
        tau = _frame_of_query(self.config.num_query, t, frames.device)  # [N]
        self_allowed = tau[None, :] <= tau[:, None]  # [N, N]
        cross_allowed = torch.arange(t * p, device=frames.device)[None, :] // p <= tau[:, None]  # [N, T*P]
        visual = self.ln_visual(frames.reshape(1, t * p, c))
        x = self.query
        y = self.ln_self(x)
        x = x + self.drop(self.self_attention(y, y, self_allowed))
        x = x + self.drop(self.cross_attention(self.ln_query(x), visual, cross_allowed))
        gate, up = self.ffn_in(self.ln_ffn(x)).chunk(2, dim=-1)
        x = x + self.drop(self.ffn_out(F.silu(gate) * up))
        return self.head(self.ln_out(x))

    def forward(self, x, split_sizes):
        if self.config.cast_inputs:
            x = x.to(self.query.dtype)
        return torch.cat([self._one_video(frames) for frames in x.split(list(split_sizes))])
