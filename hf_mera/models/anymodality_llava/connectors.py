"""Connectors: the modality-specific modules that map encoder features into the LLM's embedding space.

MERA's realignment trains exactly these, so each is small and self-contained. Built by name from a
registry; `num_output_tokens(num_input_tokens)` tells the processor how far to expand a placeholder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hf_mera.registry import Registry

CONNECTOR_REGISTRY: Registry[type[nn.Module]] = Registry("connector", base=nn.Module)


def register_connector(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a connector under `name`, built as `cls(input_size, output_size, **options)`."""
    return CONNECTOR_REGISTRY.register(name)


def build_connector(
    connector_type: str, input_size: int, output_size: int, options: dict | None = None
) -> nn.Module:
    return CONNECTOR_REGISTRY.get(connector_type, where="connector_type")(
        input_size, output_size, **(options or {})
    )


@register_connector("mlp2x_gelu")
class MLPConnector(nn.Module):
    """LLaVA-1.5's projector: Linear → GELU → Linear, token by token."""

    def __init__(self, input_size: int, output_size: int, hidden_act: str = "gelu", bias: bool = True):
        super().__init__()
        from transformers.activations import ACT2FN

        self.linear_1 = nn.Linear(input_size, output_size, bias=bias)
        self.act = ACT2FN[hidden_act]
        self.linear_2 = nn.Linear(output_size, output_size, bias=bias)

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return num_input_tokens

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


@register_connector("linear")
class LinearConnector(nn.Module):
    """LLaVA-1.0's projector: one linear map."""

    def __init__(self, input_size: int, output_size: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(input_size, output_size, bias=bias)

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return num_input_tokens

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


@register_connector("qformer")
class QFormerConnector(nn.Module):
    """`num_query_tokens` learned queries cross-attend to the encoder features through transformers'
    BLIP-2 Q-Former, then a linear map into the LLM (the paper: 32 queries for audio).

    Deviation: the paper initialises the Q-Former from bert-base-uncased; here it starts from random
    weights unless `qformer_name_or_path` names a BLIP-2 Q-Former / BERT checkpoint to load from.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        num_query_tokens: int = 32,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int | None = None,
        cross_attention_frequency: int = 2,
        qformer_name_or_path: str | None = None,
    ):
        super().__init__()
        from transformers import Blip2QFormerConfig, Blip2QFormerModel

        config = Blip2QFormerConfig(
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size or 4 * hidden_size,
            cross_attention_frequency=cross_attention_frequency,
            encoder_hidden_size=input_size,
        )
        if qformer_name_or_path:
            self.qformer = Blip2QFormerModel.from_pretrained(qformer_name_or_path, config=config)
        else:
            self.qformer = Blip2QFormerModel(config)
        self.query_tokens = nn.Parameter(torch.randn(1, num_query_tokens, hidden_size) * 0.02)
        self.projection = nn.Linear(hidden_size, output_size)

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return self.query_tokens.shape[1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        queries = self.query_tokens.expand(features.shape[0], -1, -1)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=features).last_hidden_state
        return self.projection(out.to(self.projection.weight.dtype))


__all__ = ["CONNECTOR_REGISTRY", "register_connector", "build_connector"]
