from . import pathweave  # noqa: F401  (registers the "pathweave" LLM adapter type)
from .configuration_anymodality_llava import AnyModalityLlavaConfig, ModalityConfig
from .connectors import CONNECTOR_REGISTRY, build_connector, register_connector
from .modeling_anymodality_llava import (
    AnyModalityLlavaForConditionalGeneration,
    AnyModalityLlavaModel,
    AnyModalityLlavaPreTrainedModel,
)
from .processing_anymodality_llava import AnyModalityProcessor

__all__ = [
    "AnyModalityLlavaConfig",
    "ModalityConfig",
    "CONNECTOR_REGISTRY",
    "build_connector",
    "register_connector",
    "AnyModalityLlavaModel",
    "AnyModalityLlavaPreTrainedModel",
    "AnyModalityLlavaForConditionalGeneration",
    "AnyModalityProcessor",
]
