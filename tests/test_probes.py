"""Probes: building, batching with padding, slicing by tag, fingerprints, coercion."""

import pytest
import torch

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.probes import Probes, as_probes


class CharTokenizer:
    """A stand-in tokenizer: one id per character."""

    def __call__(self, text, add_special_tokens=True):
        ids = [ord(c) % 97 for c in text]
        return {"input_ids": ([1] if add_special_tokens else []) + ids}


def test_from_texts_truncates_and_tags():
    p = Probes.from_texts(CharTokenizer(), ["hello", "a longer text"], tags=["x", "y"], max_length=4)
    assert p.token_ids[0] == [1] + [ord(c) % 97 for c in "hel"]
    assert len(p) == 2 and p.tags == ["x", "y"] and p.n_tokens == 8


def test_batches_pad_right_and_cover_every_probe_once():
    p = Probes.from_token_ids([[5, 6, 7], [1, 2], [9, 9, 9, 9, 9], [3, 4]])
    seen = []
    for batch in p.batches(2, pad_id=0):
        for row, unit in enumerate(batch.units):
            n = len(p.token_ids[unit])
            assert batch.input_ids[row, :n].tolist() == p.token_ids[unit]
            assert batch.attention_mask[row].tolist() == [1] * n + [0] * (batch.input_ids.shape[1] - n)
            seen.append(unit)
    assert sorted(seen) == [0, 1, 2, 3]


def test_by_tag_and_subset():
    p = Probes.from_token_ids([[1, 2], [3, 4], [5, 6]], tags=["a", "b", "a"])
    assert p.by_tag("a").token_ids == [[1, 2], [5, 6]]
    with pytest.raises(InvalidArgument, match="no probe is tagged 'c'"):
        p.by_tag("c")


def test_fingerprint_changes_with_content_and_tags():
    a = Probes.from_token_ids([[1, 2, 3]])
    assert a.fingerprint() == Probes.from_token_ids([[1, 2, 3]]).fingerprint()
    assert a.fingerprint() != Probes.from_token_ids([[1, 2, 4]]).fingerprint()
    assert a.fingerprint() != Probes.from_token_ids([[1, 2, 3]], tags=["t"]).fingerprint()


@pytest.mark.parametrize("bad, pattern", [
    ([], "empty"),
    ([[1]], "probe 0 has 1 token"),
    (["text"], "Probes.from_texts"),
    (torch.zeros(3, dtype=torch.long), "must be 2-D"),
    (object(), "cannot use a object"),
])
def test_bad_probes_explain_the_fix(bad, pattern):
    with pytest.raises(InvalidArgument, match=pattern):
        as_probes(bad)


def test_tensor_coercion():
    ids = torch.randint(0, 10, (3, 5))
    assert as_probes(ids).token_ids == ids.tolist()
    floats = as_probes(torch.randn(4, 2))
    assert not floats.is_tokens and len(floats) == 4
    batches = list(floats.batches(3))
    assert [b.units for b in batches] == [[0, 1, 2], [3]]


def test_tag_and_label_counts_must_match():
    with pytest.raises(InvalidArgument, match="2 tags for 1 probes"):
        Probes.from_token_ids([[1, 2]], tags=["a", "b"])
    with pytest.raises(InvalidArgument, match="1 labels for 2 probes"):
        Probes.from_tensors(torch.randn(2, 3), labels=torch.tensor([1]))
