"""`run_absent_modalities`: what DeepSpeed ZeRO-3 needs for batches of mixed modalities (every process
runs every modality's modules on every step), and that it changes no loss and no gradient.

The two-process ZeRO-3 run with Replay and realignment is in `tests/test_sharded.py` (slow)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model


def one_image_batch(processor, media_files):
    return processor(
        text=["<image> what color is the shape ?", "describe the input . <image>"],
        media=[
            [{"modality": "image", "path": media_files["image0"]}],
            [{"modality": "image", "path": media_files["image1"]}],
        ],
        padding=True,
    )


def loss_grads_and_calls(model, batch, route):
    """Loss, every parameter's gradient and how often each modality's connector / encoder ran."""
    model.model.run_absent_modalities(route)
    model.zero_grad(set_to_none=True)
    calls = {}
    hooks = [
        module.register_forward_hook(
            lambda *_, key=(kind, name): calls.__setitem__(key, calls.get(key, 0) + 1)
        )
        for kind, modules in (("connector", model.connectors), ("encoder", model.encoders))
        for name, module in modules.items()
    ]
    try:
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
        model.model.run_absent_modalities(None)
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}, calls


def assert_same_but_absent(off, on, absent: list[str]):
    """`on` equals `off` bitwise: loss, every gradient `off` has; the absent modalities' connectors
    got exact zeros where `off` got none."""
    (loss_off, grads_off, _), (loss_on, grads_on, _) = off, on
    assert torch.equal(loss_on, loss_off)
    for name, grad in grads_off.items():
        if grad is not None:
            assert torch.equal(grads_on[name], grad), name
        elif grads_on[name] is not None:
            assert any(f"connectors.{m}." in name for m in absent), name
            assert not grads_on[name].any(), name  # exact zeros (no -0.0 / NaN either way: all == 0)


@pytest.mark.parametrize("route", ["features", "values"])
def test_absent_modalities_run_and_change_nothing(tiny_tokenizer, media_files, route):
    # image + video have encoders with a fixed input shape (the values route); audio's Q-Former
    # connector is covered on the features route.
    modalities = ("image", "audio", "video") if route == "features" else ("image", "video")
    model, processor = make_tiny_model(tiny_tokenizer, modalities)
    model.train()
    model.connectors.requires_grad_(True)  # as in realignment: every connector trains
    batch = one_image_batch(processor, media_files)
    if route == "features":
        values = batch.pop("modality_values")
        with torch.no_grad():
            batch["modality_features"] = {"image": model.model.encode_features("image", values["image"])}
    absent = [m for m in modalities if m != "image"]
    off = loss_grads_and_calls(model, batch, None)
    on = loss_grads_and_calls(model, batch, route)
    assert_same_but_absent(off, on, absent)
    assert all(off[2].get(("connector", m), 0) == 0 for m in absent)
    assert all(on[2][("connector", m)] == 1 for m in absent)  # ran once, on one zero item
    for m in absent:  # the encoder runs on the values route only, as it would on real media
        assert on[2].get(("encoder", m), 0) == (1 if route == "values" else 0), m
    # A batch without media (text only) runs them too, and stays the same.
    text_only = processor(text=["what color is the shape ?"], padding=True)
    off, on = loss_grads_and_calls(model, text_only, None), loss_grads_and_calls(model, text_only, route)
    assert_same_but_absent(off, on, list(modalities))
    assert all(on[2][("connector", m)] == 1 for m in modalities)


def test_values_route_needs_an_input_shape(tiny_tokenizer):
    model, _ = make_tiny_model(tiny_tokenizer, ("image", "audio"))  # audio's spectrogram: any length
    with pytest.raises(ValueError, match="'audio'.*input_shape.*feature_cache"):
        model.model.run_absent_modalities("values")
    with pytest.raises(ValueError, match="route must be"):
        model.model.run_absent_modalities("everything")
    model.model.run_absent_modalities("features")  # fine: the connector needs no encoder input
    assert model.model.absent_modality_route == "features"
