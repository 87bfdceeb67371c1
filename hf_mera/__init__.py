"""hf_mera: modality-incremental continual learning for multimodal LLMs, the Hugging Face way.

Importing the package registers AnyModalityLlava with transformers' Auto classes, so a saved
checkpoint loads with `AutoModel`, `AutoModelForCausalLM`, `AutoModelForImageTextToText`,
`AutoModelForMultimodalLM`, `AutoConfig` and `AutoProcessor` without `trust_remote_code`, and
`pipeline("image-text-to-text" | "any-to-any", model=<stage folder>)` answers from it.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoProcessor,
)

from .models.anymodality_llava import (
    AnyModalityLlavaConfig,
    AnyModalityLlavaForConditionalGeneration,
    AnyModalityLlavaModel,
    AnyModalityProcessor,
    ModalityConfig,
)

__version__ = "0.1.0.dev0"

AnyModalityLlava = AnyModalityLlavaForConditionalGeneration


def _register_auto_classes() -> None:
    # exist_ok: a second import (e.g. after importlib.reload) must not fail.
    AutoConfig.register(AnyModalityLlavaConfig.model_type, AnyModalityLlavaConfig, exist_ok=True)
    AutoModel.register(AnyModalityLlavaConfig, AnyModalityLlavaModel, exist_ok=True)
    # The generating model under every Auto class transformers offers for it: causal LM, and the
    # two its multimodal pipelines load (image-text-to-text and any-to-any).
    for auto_class in (AutoModelForCausalLM, AutoModelForImageTextToText, AutoModelForMultimodalLM):
        auto_class.register(AnyModalityLlavaConfig, AnyModalityLlavaForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(AnyModalityLlavaConfig, AnyModalityProcessor, exist_ok=True)


_register_auto_classes()

__all__ = [
    "AnyModalityLlava",
    "AnyModalityLlavaConfig",
    "AnyModalityLlavaForConditionalGeneration",
    "AnyModalityLlavaModel",
    "AnyModalityProcessor",
    "ModalityConfig",
]
