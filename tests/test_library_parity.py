"""Library code of our field in place of our own (issue #9), each checked against the code it replaced.

The replaced implementations are kept here, verbatim, as references: a change in the library (or in our
use of it) makes these tests fail. "Quickstart" cases use `hf_mera/configs/quickstart.yaml`'s own settings,
where the results must stay bitwise identical.
"""

from __future__ import annotations

import random
from importlib import resources

import pytest
import torch
import yaml

from hf_mera.data.collator import IGNORE_INDEX, MultimodalCollator

QUICKSTART = yaml.safe_load(resources.files("hf_mera").joinpath("configs/quickstart.yaml").read_text())
QUICKSTART_MODALITIES = QUICKSTART["model"]["modalities"]


# ---- 1. padding: trl's `pad` ---------------------------------------------------------------------------
def _pad_reference(ids, labels, pad_id, pad_to_multiple_of):
    """`MultimodalCollator._pad` before trl's `pad` replaced it."""
    longest = max(len(x) for x in ids)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    label_ids = torch.full((len(ids), longest), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(ids), longest), dtype=torch.long)
    for i, (x, y) in enumerate(zip(ids, labels)):
        input_ids[i, : len(x)] = torch.tensor(x)
        label_ids[i, : len(y)] = torch.tensor(y)
        attention[i, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": label_ids}


# None is the quickstart's setting (its trainers build the collator without pad_to_multiple_of).
@pytest.mark.parametrize("pad_to_multiple_of", [None, 0, 1, 8, 64])
def test_trl_pad_is_bitwise_the_old_padding(pad_to_multiple_of):
    rng = random.Random(0)
    collator = MultimodalCollator(processor=None, pad_to_multiple_of=pad_to_multiple_of)
    for batch_size in (1, 2, 7, 32):
        lengths = [rng.randint(1, 90) for _ in range(batch_size)]
        ids = [[rng.randint(0, 60) for _ in range(n)] for n in lengths]
        labels = [[t if rng.random() < 0.3 else IGNORE_INDEX for t in row] for row in ids]
        new = collator._pad(ids, labels, pad_id=3)
        old = _pad_reference(ids, labels, 3, pad_to_multiple_of)
        assert list(new) == list(old)
        for key in old:
            assert new[key].dtype == old[key].dtype, key
            assert torch.equal(new[key], old[key]), key
