"""What the three phase trainers share: argument checks, freezing, and the multimodal collator."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from torch import nn
from trl import SFTTrainer

from hf_mera.data.collator import MultimodalCollator

if TYPE_CHECKING:
    from datasets import Dataset


def check_modalities(model: nn.Module, modalities: Sequence[str], who: str) -> list[str]:
    """`modalities` as a list, each known to `model` and given once; else a ValueError naming the culprit."""
    if isinstance(modalities, str):
        modalities = [modalities]
    modalities = list(modalities)
    if not modalities:
        raise ValueError(f"{who}: name at least one modality whose connector to train.")
    known = list(getattr(getattr(model, "model", None), "connectors", {}))
    for name in modalities:
        if name not in known:
            raise ValueError(
                f"{who}: unknown modality {name!r}; the model has connectors for {known or 'none'}."
            )
    repeated = sorted({name for name in modalities if modalities.count(name) > 1})
    if repeated:
        raise ValueError(f"{who}: modality {repeated[0]!r} is listed more than once.")
    return modalities


def check_train_dataset(train_dataset: Dataset | None, who: str, modalities: Sequence[str]) -> None:
    # SFTTrainer reads the first row before anything else, so an empty dataset would surface as a
    # bare StopIteration.
    if train_dataset is None:
        raise ValueError(f"{who}: pass the train_dataset for modality {', '.join(modalities)}.")
    if hasattr(train_dataset, "__len__") and len(train_dataset) == 0:
        raise ValueError(f"{who}: the train_dataset for modality {', '.join(modalities)} is empty.")


def resolve_args(args, config_class: type, who: str, modalities: Sequence[str]):
    """`args`, or the paper's defaults when None; a config of another class is a ValueError."""
    if args is None:
        return config_class(output_dir=f"{who}-{'-'.join(modalities)}")
    if not isinstance(args, config_class):
        raise ValueError(
            f"{who}: args must be a {config_class.__name__} (it keeps the sample-format columns and the "
            f"paper's defaults), got {type(args).__name__}."
        )
    return args


def train_only(model: nn.Module, parameters: Iterable[nn.Parameter]) -> None:
    """Freeze every parameter of `model`, then unfreeze `parameters`.

    Frozen parameters get no gradient and no optimizer state, so they stay bitwise unchanged.
    """
    model.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)


class MultimodalSFTTrainer(SFTTrainer):
    """`SFTTrainer` on rows of the sample format, batched by `hf_mera.data.MultimodalCollator`.

    Subclasses set `config_class` and decide what trains; this class only checks the arguments,
    since the model, the processor and the dataset cannot be guessed (no hub download, no text
    preparation of multimodal rows).
    """

    config_class: ClassVar[type | None] = None  # the phase's config, set by subclasses

    def __init__(
        self,
        model: nn.Module,
        modalities: Sequence[str],
        args=None,
        train_dataset: Dataset | None = None,
        processing_class=None,
        data_collator=None,
        **kwargs,
    ):
        who = type(self).__name__
        args = resolve_args(args, self.config_class, who, modalities)
        check_train_dataset(train_dataset, who, modalities)
        if processing_class is None:
            raise ValueError(f"{who}: pass processing_class, the model's AnyModalityProcessor.")
        if data_collator is None:
            # SFTConfig's max_length / pad_to_multiple_of apply to the rows this collator builds.
            data_collator = MultimodalCollator(
                processing_class, max_length=args.max_length, pad_to_multiple_of=args.pad_to_multiple_of
            )
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            processing_class=processing_class,
            **kwargs,
        )


__all__ = ["MultimodalSFTTrainer", "check_modalities", "check_train_dataset", "resolve_args", "train_only"]
