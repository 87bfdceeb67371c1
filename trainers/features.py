"""Encoder features of a run: each media item encoded once by its frozen encoder, through the disk
cache, then looked up by the collator instead of running the encoder at every step."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from hf_mera.continual.curriculum import RunConfig

from .data_sources import DataSource


class FeatureBank:
    """Per modality, `{media path: encoder features}` for every item of the run's train, test and
    cross-modal sets. Encoders are frozen in every phase, so one encoding serves every method."""

    def __init__(self, run: RunConfig, data: DataSource, state, output_dir: Path, progress: bool, clock=None):
        self.run, self.data, self.state = run, data, state
        self.output_dir, self.progress = output_dir, progress
        self.clock = clock  # a `trainers.timing.PhaseClock`: encoding is reported as its own phase
        self._features: dict[str, dict[str, torch.Tensor]] = {}

    @property
    def enabled(self) -> bool:
        return self.run.data.feature_cache

    def modality_paths(self, modality: str) -> list[str]:
        """Every media file of `modality` in the run's train, val, test and cross-modal sets."""
        datasets = list(self.data.train_sets[modality].values()) + list(
            self.data.test_sets[modality].values()
        )
        # Val too, so `evaluation.split: val` (or a bench script's `evaluate(split="val")`) finds them.
        datasets += list((self.data.val_sets or {}).get(modality, {}).values())
        if self.data.cross_modal is not None:
            datasets.append(self.data.cross_modal)
        paths = {
            item["path"]
            for ds in datasets
            for media in ds["media"]
            for item in media
            if item["modality"] == modality
        }
        return sorted(paths)

    def ensure(self, model, processor, modality: str) -> None:
        """Encode every item of `modality` once with the (frozen) encoder, through the disk cache."""
        if not self.enabled or modality in self._features:
            return
        with self.clock.phase("feature_encoding") if self.clock else nullcontext():
            self._encode(model, processor, modality)

    def _encode(self, model, processor, modality: str) -> None:
        from hf_mera.data.feature_cache import FeatureCache
        from hf_mera.modalities import encoder_fingerprint

        mc = model.config.modality(modality)
        fingerprint = "-".join(
            [
                encoder_fingerprint(mc.encoder_type, mc.encoder_config, model.model.encoders[modality]),
                processor.preprocessor(modality).fingerprint(),
                f"pool{mc.token_pool}",
            ]
        )
        cache_dir = (
            Path(self.run.data.cache_dir) if self.run.data.cache_dir else self.output_dir / "feature_cache"
        )
        cache = FeatureCache(cache_dir)
        paths = self.modality_paths(modality)
        model.eval()

        @torch.no_grad()
        def compute(batch_paths: list[str]) -> torch.Tensor:
            return model.encode_features(modality, processor.preprocess(modality, batch_paths)).float()

        with self.state.main_process_first():
            tensors = cache.get_or_compute(paths, fingerprint, compute, batch_size=32, progress=self.progress)
        self._features[modality] = dict(zip(paths, tensors))

    def lookup(self, row: dict) -> dict[str, torch.Tensor]:
        """The cached features of a row's media, stacked per modality (the collator's `feature_lookup`)."""
        by_modality: dict[str, list[torch.Tensor]] = {}
        for item in row["media"]:
            bank = self._features.get(item["modality"])
            if bank is None:
                raise ValueError(
                    f"Sample {row.get('id')!r}: no cached features for modality {item['modality']!r}."
                )
            by_modality.setdefault(item["modality"], []).append(bank[item["path"]])
        return {m: torch.stack(ts) for m, ts in by_modality.items()}

    @property
    def feature_lookup(self):
        """`lookup` when the run trains on cached features, else None (the model encodes raw media)."""
        return self.lookup if self.enabled else None

    def collator(self, processor):
        from hf_mera.data.collator import MultimodalCollator

        return MultimodalCollator(processor, feature_lookup=self.feature_lookup)


__all__ = ["FeatureBank"]
