"""AnyModalityLlava: LLaVA with one encoder + connector per modality around one shared causal LM.

Mirrors transformers' v5 `LlavaModel` / `LlavaForConditionalGeneration`: the backbone
(`AnyModalityLlavaModel`, reached as `model.model` / `model.base_model`) holds `encoders` and
`connectors` (`nn.ModuleDict`s keyed by modality) and `language_model` (a base model such as
`LlamaModel`); the top level adds `lm_head`. Parameter paths are therefore predictable —
`model.connectors.audio.*`, `model.language_model.*` — which is what MERA's "merge only the LLM,
realign only the connectors" relies on, and what trl's fused LM head expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_anymodality_llava import AnyModalityLlavaConfig, ModalityConfig
from .connectors import QFormerConnector, build_connector
from .llm_adapters import apply_llm_adapters, normalize_llm_adapters
from .processing_anymodality_llava import merge_row_media

# The KV cache is never named here. transformers 5.24 renamed it from `past_key_values` to `cache`
# in model forwards and output classes; like its own multimodal models, these outputs subclass
# transformers' output classes (so the field has whichever name the installed release uses), the
# forwards pass the cache through `**kwargs` to the language model untouched, and outputs are
# built from the language model's own output (`**outputs`), so no name is spelled out.


@dataclass
class AnyModalityLlavaModelOutputWithPast(BaseModelOutputWithPast):
    """`BaseModelOutputWithPast` plus the connector outputs of every modality in the batch."""

    modality_hidden_states: dict[str, torch.Tensor] | None = None


@dataclass
class AnyModalityLlavaCausalLMOutputWithPast(CausalLMOutputWithPast):
    """`CausalLMOutputWithPast` plus the connector outputs of every modality in the batch."""

    modality_hidden_states: dict[str, torch.Tensor] | None = None


def _mark_keep_own_init(module: nn.Module) -> None:
    # Encoders arrive pretrained (or with their own deliberate init); the generic `_init_weights`
    # must never overwrite them, neither at construction nor for keys missing at load time.
    # Their non-persistent buffers (position ids, filterbanks) are not in checkpoints and loading
    # leaves them uninitialised, so `_init_weights` restores them from this snapshot.
    for sub in module.modules():
        sub._hf_mera_keep_init = True
        persistent_exempt = getattr(sub, "_non_persistent_buffers_set", set())
        sub._hf_mera_buffer_snapshot = {
            name: buf.detach().clone()
            for name, buf in sub.named_buffers(recurse=False)
            if name in persistent_exempt
        }


def load_modality_encoder(modality: ModalityConfig) -> nn.Module:
    """The modality's encoder with its pretrained weights: from `encoder_name_or_path`, or a
    built-in's packaged / deterministic weights. `modality.encoder_type` and `encoder_config` are
    updated in place to the config that rebuilds exactly this architecture, and `preprocess` is
    completed from a hub encoder's own processor (its size, mean and std; YAML values win)."""
    from hf_mera.modalities import get_modality, load_pretrained_encoder
    from hf_mera.modalities.encoders.transformers_encoder import preprocess_with_hub_defaults

    encoder_type = modality.encoder_type or get_modality(modality.name).default_encoder_type
    encoder, encoder_config = load_pretrained_encoder(
        encoder_type, modality.encoder_name_or_path, **modality.encoder_config
    )
    modality.encoder_type, modality.encoder_config = encoder_type, encoder_config
    modality.preprocess = preprocess_with_hub_defaults(modality.name, encoder, modality.preprocess)
    return encoder


def _restore_buffers(module: nn.Module) -> None:
    with torch.no_grad():
        for sub in module.modules():
            for name, value in getattr(sub, "_hf_mera_buffer_snapshot", {}).items():
                getattr(sub, name).copy_(value)


class AnyModalityLlavaPreTrainedModel(PreTrainedModel):
    config: AnyModalityLlavaConfig
    config_class = AnyModalityLlavaConfig
    base_model_prefix = "model"
    # transformers reads `input_modalities` for its own media stack only: the any-to-any pipeline
    # requires torchvision when "image" or "video" is listed (its image and video processors use it),
    # and generate pre-encodes `pixel_values` through `get_image_features` for them. This model's media
    # never take that path (its processor decodes them with Pillow, PyAV, soundfile and trimesh; forward
    # encodes them), and torchvision does not import beside the CPU torch ("operator torchvision::nms
    # does not exist"), so only text and audio are listed. A checkpoint's modalities: `modality_names`.
    input_modalities = ("text", "audio")
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        from hf_mera.models.pretrained import kernel_kwargs

        # Hub kernels stay off unless asked for (`use_kernels=True`, a run's `model.use_kernels`):
        # transformers >= 5.25 would otherwise turn them on, changing numerics and needing the hub.
        kwargs = {**kernel_kwargs(False), **kwargs}
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        # Loading leaves non-persistent buffers uninitialised and skips modules a wrapped transformers
        # encoder already marked initialised: restore every encoder's buffers from its snapshot.
        _restore_buffers(model)
        return loaded

    def _init_weights(self, module):
        if getattr(module, "_hf_mera_keep_init", False):
            _restore_buffers(module)
            return
        if isinstance(module, QFormerConnector):
            nn.init.normal_(module.query_tokens, std=0.02)
        super()._init_weights(module)


class AnyModalityLlavaModel(AnyModalityLlavaPreTrainedModel):
    """The backbone: encoders and connectors per modality, and the language model without its head."""

    def __init__(self, config: AnyModalityLlavaConfig):
        super().__init__(config)
        self.encoders = nn.ModuleDict()
        self.connectors = nn.ModuleDict()
        # Off (None) but under DeepSpeed ZeRO-3, where a trainer sets it: see `run_absent_modalities`.
        self.absent_modality_route: str | None = None
        for name in config.modalities:
            self._add_modality_modules(config.modality(name))
        self.language_model = AutoModel.from_config(config.text_config)
        if config.llm_adapters:  # a method's modules inside the LLM (e.g. PathWeave's), rebuilt on load
            apply_llm_adapters(self.language_model, config.llm_adapters)
        self.post_init()

    # ---- modalities -------------------------------------------------------------------------
    @property
    def modality_names(self) -> list[str]:
        return list(self.config.modalities)

    def _add_modality_modules(self, modality: ModalityConfig, encoder: nn.Module | None = None) -> None:
        if encoder is None:
            from hf_mera.modalities import build_encoder, get_modality

            encoder_type = modality.encoder_type or get_modality(modality.name).default_encoder_type
            # `from_pretrained` builds the model on the meta device; encoders may compute buffers in
            # their constructor (filterbanks, windows) that are not in the checkpoint, so build them
            # for real. Their parameters are then overwritten by the loaded weights.
            with torch.device("cpu"):
                encoder = build_encoder(encoder_type, modality.encoder_config)
        for attr in ("hidden_size", "num_tokens"):
            if not isinstance(getattr(encoder, attr, None), int):
                raise ValueError(
                    f"Modality {modality.name!r}: its encoder must expose an int `{attr}` "
                    "(see hf_mera.modalities.ModalityEncoder)."
                )
        _mark_keep_own_init(encoder)
        if modality.freeze_encoder:
            encoder.requires_grad_(False)
        options = dict(modality.connector_config)
        if modality.connector_type == "mlp2x_gelu":
            options.setdefault("hidden_act", self.config.projector_hidden_act)
        text_hidden = self.config.get_text_config().hidden_size
        connector = build_connector(modality.connector_type, encoder.hidden_size, text_hidden, options)
        self.encoders[modality.name] = encoder
        self.connectors[modality.name] = connector

    def num_feature_tokens(self, name: str) -> int:
        """Tokens per item entering the connector (after the optional `token_pool`)."""
        modality = self.config.modality(name)
        return modality.token_pool or self.encoders[name].num_tokens

    def tokens_per_item(self, name: str) -> int:
        """Placeholder tokens one item of `name` occupies in the LLM's sequence."""
        return self.connectors[name].num_output_tokens(self.num_feature_tokens(name))

    def encode_features(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """Encoder (+ token pooling) output for raw preprocessed `values`: what the feature cache stores."""
        encoder = self.encoders[name]
        trainable = any(p.requires_grad for p in encoder.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            features = encoder(values)
        pool = self.config.modalities[name].get("token_pool")
        if pool is not None and features.shape[1] != pool:
            # Adaptive average pooling over the token axis keeps token order (time, space) coarse-grained.
            features = F.adaptive_avg_pool1d(features.transpose(1, 2), pool).transpose(1, 2)
        return features

    def get_modality_embeddings(
        self, name: str, values: torch.Tensor | None = None, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Connector output `[n_items, tokens_per_item, hidden]` from raw values or cached features."""
        if name not in self.connectors:
            raise ValueError(f"Unknown modality {name!r}; this model knows {self.modality_names or 'none'}.")
        if features is None:
            if values is None:
                raise ValueError(f"Modality {name!r}: pass its values or its features.")
            features = self.encode_features(name, values)
        connector = self.connectors[name]
        first_param = next(connector.parameters())
        return connector(features.to(first_param.dtype))

    def run_absent_modalities(self, route: str | None) -> None:
        """Make every training forward run every modality's modules, also for a batch that holds none of it.

        DeepSpeed ZeRO-3 all-gathers a module's weights when the module runs (forward and backward), a
        collective: every process must run the same modules in the same order. A batch of mixed modalities
        (Replay, realignment) that lacks a modality on one process would skip that modality's connector
        (and encoder) there, and the processes' all-gathers stop matching. With a route set, an absent
        modality runs on one zero item — `"features"`: its connector on zero features (training on the
        feature cache); `"values"`: its encoder and connector on a zero input of the encoder's
        `input_shape` — and the output is scattered through its (all-False) placeholder mask, the same
        operation a present modality goes through: the embeddings are unchanged bit for bit and its
        weights' gradient is exact zeros. (ZeRO-3 steps on zero gradients of unused weights anyway.)
        `None` turns it off, the default: elsewhere it would cost a pass per absent modality and turn an
        unused weight's missing gradient into a zero one (which AdamW steps on)."""
        if route not in (None, "features", "values"):
            raise ValueError(
                f"run_absent_modalities: route must be None, 'features' or 'values', got {route!r}."
            )
        if route == "values":
            shapeless = [
                n for n in self.modality_names if getattr(self.encoders[n], "input_shape", None) is None
            ]
            if shapeless:
                raise ValueError(
                    f"Modality {shapeless[0]!r}: its encoder declares no input_shape, so a batch without it cannot "
                    "run it on a zero input (needed under DeepSpeed ZeRO-3 with raw media); train on the feature "
                    "cache (data.feature_cache: true) or use FSDP2."
                )
        self.absent_modality_route = route

    def absent_modality_input(self, name: str) -> dict[str, torch.Tensor]:
        """One zero item of `name` for `absent_modality_route`: `{"features": ...}` or `{"values": ...}`."""
        encoder = self.encoders[name]
        reference = next(iter(self.connectors[name].parameters()))
        if self.absent_modality_route == "features":
            shape = (1, self.num_feature_tokens(name), encoder.hidden_size)
            return {"features": torch.zeros(shape, device=reference.device)}
        encoder_param = next(iter(encoder.parameters()), reference)
        shape = (1, *encoder.input_shape)
        return {"values": torch.zeros(shape, dtype=encoder_param.dtype, device=encoder_param.device)}

    def _splice(self, input_ids, inputs_embeds, modality_values, modality_features):
        given = set(modality_values or {}) | set(modality_features or {})
        unknown = sorted(given - set(self.connectors))
        if unknown:
            raise ValueError(f"Unknown modality {unknown}; this model knows {self.modality_names or 'none'}.")
        hidden_by_modality = {}
        for name in self.modality_names:
            token_id = self.config.modalities[name]["token_id"]
            mask = input_ids == token_id if (input_ids is not None and token_id is not None) else None
            n_tokens = int(mask.sum()) if mask is not None else 0
            if name not in given:
                if n_tokens:
                    raise ValueError(
                        f"Modality {name!r}: the text holds {n_tokens} placeholder tokens but no {name} input "
                        "was given (pass modality_values or modality_features)."
                    )
                if self.absent_modality_route is not None and mask is not None:
                    # A batch without this modality still runs its modules (see `run_absent_modalities`),
                    # scattered through an all-False mask: nothing is written, its gradient is exact zeros.
                    embeds = self.get_modality_embeddings(name, **self.absent_modality_input(name))
                    embeds = embeds.to(inputs_embeds.device, inputs_embeds.dtype)
                    inputs_embeds = inputs_embeds.masked_scatter(
                        mask.unsqueeze(-1).to(inputs_embeds.device), embeds
                    )
                continue
            if mask is None:
                raise ValueError(f"Modality {name!r}: placeholders can only be located through input_ids.")
            embeds = self.get_modality_embeddings(
                name, (modality_values or {}).get(name), (modality_features or {}).get(name)
            )
            n_items, per_item = embeds.shape[:2]
            if n_tokens != n_items * per_item:
                raise ValueError(
                    f"Modality {name!r}: the text holds {n_tokens} placeholder tokens but {n_items} item(s) × "
                    f"{per_item} tokens = {n_items * per_item} features were given; each placeholder must be "
                    f"expanded to {per_item} tokens (the processor does this)."
                )
            embeds = embeds.to(inputs_embeds.device, inputs_embeds.dtype)
            inputs_embeds = inputs_embeds.masked_scatter(mask.unsqueeze(-1).to(inputs_embeds.device), embeds)
            hidden_by_modality[name] = embeds
        return inputs_embeds, hidden_by_modality

    # ---- forward ----------------------------------------------------------------------------
    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        modality_values: dict[str, torch.Tensor] | None = None,
        modality_features: dict[str, torch.Tensor] | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> AnyModalityLlavaModelOutputWithPast:
        r"""
        modality_values (`dict[str, torch.Tensor]`, *optional*):
            Preprocessed inputs per modality, `[n_items, ...]`, items in the order their placeholders
            appear in the batch (row by row). The processor builds them.
        modality_features (`dict[str, torch.Tensor]`, *optional*):
            Encoder outputs per modality (`encode_features`), e.g. from the feature cache; they skip
            the frozen encoders.
        kwargs:
            Passed to the language model as they are, the KV cache included (under the name the
            installed transformers uses).
        """
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        hidden_by_modality = {}
        if modality_values or modality_features:
            inputs_embeds, hidden_by_modality = self._splice(
                input_ids, inputs_embeds, modality_values, modality_features
            )
        elif input_ids is not None:
            # No media: still refuse placeholders nobody fills. Decoding steps pass here too; their
            # new tokens never are placeholders, since generation suppresses them. (The embeddings come
            # back unchanged; under `run_absent_modalities` every modality's modules ran on them.)
            inputs_embeds, _ = self._splice(input_ids, inputs_embeds, None, None)
        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return AnyModalityLlavaModelOutputWithPast(
            **outputs, modality_hidden_states=hidden_by_modality or None
        )


class AnyModalityLlavaForConditionalGeneration(AnyModalityLlavaPreTrainedModel, GenerationMixin):
    """AnyModalityLlava with a language-modelling head; exported as `hf_mera.AnyModalityLlava`."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: AnyModalityLlavaConfig):
        super().__init__(config)
        self.model = AnyModalityLlavaModel(config)
        text_config = config.get_text_config()
        self.lm_head = nn.Linear(text_config.hidden_size, text_config.vocab_size, bias=False)
        # The tied embedding's path depends on the LM family (embed_tokens, wte, ...).
        embed_path = next(
            n for n, m in self.model.language_model.named_modules() if m is self.model.get_input_embeddings()
        )
        self._tied_weights_keys = {"lm_head.weight": f"model.language_model.{embed_path}.weight"}
        self.post_init()

    # ---- plumbing transformers expects -------------------------------------------------------
    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    @property
    def encoders(self) -> nn.ModuleDict:
        return self.model.encoders

    @property
    def connectors(self) -> nn.ModuleDict:
        return self.model.connectors

    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model

    @property
    def modality_names(self) -> list[str]:
        return self.model.modality_names

    def tokens_per_item(self, name: str) -> int:
        return self.model.tokens_per_item(name)

    def encode_features(self, name: str, values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_features(name, values)

    # ---- continual learning: grow by one modality ---------------------------------------------
    def add_modality(
        self, modality: ModalityConfig | dict, encoder: nn.Module | None = None, processor=None
    ) -> ModalityConfig:
        """Add a modality at run time without changing anything already learned.

        Builds its encoder (or takes `encoder`, e.g. from `load_pretrained_encoder`) and a fresh
        connector, adds its placeholder token to `processor`'s tokenizer (or uses `modality.token_id`),
        and grows the embeddings only if the token id lies beyond them: existing rows, encoders and
        connectors are untouched, so the outputs on old modalities stay the same.
        """
        modality = ModalityConfig.from_dict(modality)
        if modality.name in self.config.modalities:
            raise ValueError(f"Modality {modality.name!r} is already part of this model.")
        self.model._add_modality_modules(modality, encoder)
        try:
            if processor is not None:
                modality.token_id = processor.add_modality(
                    modality, tokens_per_item=self._tokens_per_item_of(modality)
                )
            if modality.token_id is None:
                raise ValueError(
                    f"Modality {modality.name!r}: pass `processor=` (to add its placeholder token) or set token_id."
                )
        except Exception:
            del self.model.encoders[modality.name]
            del self.model.connectors[modality.name]
            raise
        new_modules = [self.model.encoders[modality.name], self.model.connectors[modality.name]]
        device = self.lm_head.weight.device
        for module in new_modules:
            module.to(device)
        self.model.connectors[modality.name].to(self.lm_head.weight.dtype)
        vocab = self.get_input_embeddings().weight.shape[0]
        needed = max(modality.token_id + 1, len(processor.tokenizer) if processor is not None else 0)
        if needed > vocab:
            # mean_resizing=False: new rows are placeholders whose embeddings are always replaced by
            # features; a covariance fit over a large vocabulary would only cost time.
            self.resize_token_embeddings(needed, mean_resizing=False)
        self.config.modalities = {**self.config.modalities, modality.name: modality.to_dict()}
        # A placeholder is never a word: generation must not produce one (it would ask for media).
        suppressed = list(self.generation_config.suppress_tokens or [])
        self.generation_config.suppress_tokens = sorted({*suppressed, modality.token_id})
        return modality

    def set_llm_adapters(self, spec: dict) -> dict:
        """Build, or grow to `spec`, the adapters a method puts inside the LLM, and record `spec` in
        `config.llm_adapters` so `from_pretrained` rebuilds them. `spec["type"]` names a registered
        type (`llm_adapters.LLM_ADAPTER_REGISTRY`, e.g. "pathweave"); returns the checked `spec`."""
        spec = normalize_llm_adapters(spec, self.modality_names)
        apply_llm_adapters(self.model.language_model, spec)
        self.config.llm_adapters = spec
        return spec

    def _tokens_per_item_of(self, modality: ModalityConfig) -> int:
        per_item = modality.token_pool or self.model.encoders[modality.name].num_tokens
        return self.model.connectors[modality.name].num_output_tokens(per_item)

    # ---- forward / generate ------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        modality_values: dict[str, torch.Tensor] | None = None,
        modality_features: dict[str, torch.Tensor] | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> AnyModalityLlavaCausalLMOutputWithPast:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            modality_values=modality_values,
            modality_features=modality_features,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, slice_indices, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.get_text_config().vocab_size, **kwargs
            )
        # Everything the backbone returned but its last hidden state: cache, hidden states,
        # attentions, connector outputs.
        rest = {name: value for name, value in outputs.items() if name != "last_hidden_state"}
        return AnyModalityLlavaCausalLMOutputWithPast(loss=loss, logits=logits, **rest)

    def prepare_inputs_for_generation(
        self, input_ids, modality_values=None, modality_features=None, is_first_iteration=False, **kwargs
    ):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, is_first_iteration=is_first_iteration, **kwargs
        )
        # A pipeline batching preprocessed rows hands over one media dict per row: stack them.
        modality_values, modality_features = map(merge_row_media, (modality_values, modality_features))
        # Features are spliced at prefill only; later steps read them from the KV cache.
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs["modality_values"] = modality_values
            model_inputs["modality_features"] = modality_features
        return model_inputs

    # ---- assembling from pretrained parts ----------------------------------------------------
    @classmethod
    def from_pretrained_components(
        cls,
        llm: str | PreTrainedModel,
        modalities: list[ModalityConfig | dict] = (),
        processor=None,
        tokenizer=None,
        llm_kwargs: dict | None = None,
        projector_hidden_act: str = "gelu",
    ):
        """Assemble an AnyModalityLlava from a pretrained causal LM and pretrained encoders.

        `llm` is a hub id, a local folder or an already-loaded causal LM (e.g. loaded from GGUF).
        Its base model's weights become `model.language_model.*` and its head `lm_head` (tied
        embeddings stay tied). Each modality's encoder comes from `load_modality_encoder`
        (`encoder_name_or_path`, or a built-in's packaged weights); connectors start fresh.
        Returns `(model, processor)`.
        """
        from .processing_anymodality_llava import AnyModalityProcessor

        if isinstance(llm, (str, bytes)) or hasattr(llm, "__fspath__"):
            from hf_mera.models.pretrained import kernel_kwargs

            llm = AutoModelForCausalLM.from_pretrained(llm, **{**kernel_kwargs(False), **(llm_kwargs or {})})
        if tokenizer is None and processor is None:
            raise ValueError("Pass the LLM's `tokenizer` (or a ready `processor`).")
        if processor is None:
            processor = AnyModalityProcessor(tokenizer=tokenizer)
        text_config = llm.config
        # A GGUF-loaded model carries a quantization_config that save_pretrained refuses; the weights
        # are already dequantised, so it no longer applies.
        if getattr(text_config, "quantization_config", None) is not None:
            del text_config.quantization_config
        config = AnyModalityLlavaConfig(
            text_config=text_config.to_dict(),
            projector_hidden_act=projector_hidden_act,
            tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
        )
        model = cls(config)
        base = llm.get_base_model() if hasattr(llm, "get_base_model") else getattr(llm, llm.base_model_prefix)
        missing, unexpected = model.model.language_model.load_state_dict(base.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"Could not map the LLM's weights into the composite: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}."
            )
        with torch.no_grad():
            model.lm_head.weight.copy_(llm.get_output_embeddings().weight)
        if config.tie_word_embeddings:
            model.tie_weights()
        model.to(dtype=llm.dtype)
        model.generation_config = llm.generation_config
        for modality in modalities:
            modality = ModalityConfig.from_dict(modality)
            encoder = load_modality_encoder(modality)
            model.add_modality(modality, encoder=encoder, processor=processor)
        return model, processor

    @classmethod
    def from_llava(cls, model_or_path, processor=None, **kwargs):
        """Import a transformers `LlavaForConditionalGeneration` (model, folder or hub id) with its
        `LlavaProcessor`: a model that already knows images, to extend with more modalities.
        Returns `(model, processor)`; the mapping and its exactness are in `llava_import.py`."""
        from .llava_import import from_llava

        return from_llava(cls, model_or_path, processor=processor, **kwargs)


__all__ = [
    "AnyModalityLlavaPreTrainedModel",
    "AnyModalityLlavaModel",
    "AnyModalityLlavaForConditionalGeneration",
]
