"""Probes: building, batching with padding, slicing by tag, fingerprints, coercion, disjoint built-in sets."""

import pytest
import torch

from pytest_hemorrhage.corpus import BUILTIN_SNIPPETS
from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.mitigate.suggest import calibration_probes
from pytest_hemorrhage.probes import Probes, as_probes, register_tokenizer


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


# ------------------------------------------------------------------ disjoint built-in sets


class TextTokenizer:
    """A lossless stand-in tokenizer: a start id, then one id per character (its code point)."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([1] if add_special_tokens else []) + [ord(c) for c in text]}


def _source_text(ids):
    """The built-in text a TextTokenizer probe was cut from."""
    prefix = "".join(chr(i) for i in ids[1:])
    (text,) = [text for _, text in BUILTIN_SNIPPETS if text.startswith(prefix)]
    return text


@pytest.fixture(params=["characters", pytest.param("default model", marks=pytest.mark.slow)])
def tokenizer(request):
    if request.param == "characters":
        return TextTokenizer()
    return request.getfixturevalue("hemorrhage_default_model")[1]


@pytest.mark.parametrize("sizes, max_length", [((16, 32), 128), ((48, 16, 16), 64)])
def test_split_sets_are_consecutive_runs_of_the_builtin_order(tokenizer, sizes, max_length):
    """How benchmarks/claims_pruning.py drew calibration and held-out probes before the library did:
    consecutive slices of every built-in probe in seed-0 order. Its figures were measured on those."""
    everything = Probes.builtin(tokenizer, n=None, max_length=max_length)
    parts = Probes.builtin_split(tokenizer, sizes, max_length=max_length)
    start = 0
    for part, size in zip(parts, sizes):
        expected = everything.subset(range(start, start + size))
        assert (part.token_ids, part.tags) == (expected.token_ids, expected.tags)
        start += size
    first = Probes.builtin(tokenizer, n=sizes[0], max_length=max_length)
    assert parts[0].fingerprint() == first.fingerprint()


@pytest.mark.parametrize("n_eval, eval_length, n_cal, cal_length, shared", [
    (32, 128, 16, 64, True),  # the benchmark: some of the first 16 seed-1 texts are evaluation texts
    (16, 64, 8, 64, False),  # the default-model claim tests: none of the first 8 are
])
def test_split_excluding_evaluation_probes_gives_the_earlier_calibration_sets(
    tokenizer, n_eval, eval_length, n_cal, cal_length, shared
):
    """How benchmarks/claims_scaling_decoding.py (and the default-model claim tests) drew calibration
    probes before the library did: seed-1 probes whose ids were not those of an evaluation probe cut
    to the calibration length, the first ``n_cal`` of them. Its figures were measured on those."""
    evaluation = Probes.builtin(tokenizer, n=n_eval, max_length=eval_length, seed=0)
    pool = Probes.builtin(tokenizer, n=None, max_length=cal_length, seed=1)
    taken = {tuple(ids[:cal_length]) for ids in evaluation.token_ids}
    expected = [ids for ids in pool.token_ids if tuple(ids) not in taken][:n_cal]
    assert (expected != pool.token_ids[:n_cal]) == shared
    (calibration,) = Probes.builtin_split(tokenizer, (n_cal,), max_length=cal_length, seed=1, exclude=evaluation)
    assert calibration.token_ids == expected


def test_split_skips_texts_the_excluded_probes_hold_at_another_length():
    tok = TextTokenizer()
    evaluation = Probes.builtin(tok, n=64, max_length=128)
    (calibration,) = Probes.builtin_split(tok, (16,), max_length=64, seed=1, exclude=[evaluation])
    used = {_source_text(ids) for ids in evaluation.token_ids}
    assert len(calibration) == 16
    assert not used & {_source_text(ids) for ids in calibration.token_ids}
    # Comparing whole token-id lists misses them: the same texts, cut at 64 and at 128 characters.
    plain = Probes.builtin(tok, n=16, max_length=64, seed=1)
    assert used & {_source_text(ids) for ids in plain.token_ids}
    assert not {tuple(ids) for ids in plain.token_ids} & {tuple(ids) for ids in evaluation.token_ids}


def test_split_names_its_sets_and_explains_bad_arguments():
    tok = TextTokenizer()
    first, second = Probes.builtin_split(tok, (2, 3), max_length=16, seed=4)
    assert (len(first), len(second)) == (2, 3)
    assert second.name == "builtin_split(sizes=[2, 3],max_length=16,seed=4)[1]"
    assert not {tuple(ids) for ids in first.token_ids} & {tuple(ids) for ids in second.token_ids}
    (only,) = Probes.builtin_split(tok, (4,), tags=["math"], exclude=first)
    assert only.tags == ["math"] * 4 and only.name.endswith(", disjoint from 2 probes")
    with pytest.raises(InvalidArgument, match=r"sizes: pass one size per set, e.g. \(16, 32\); got 16"):
        Probes.builtin_split(tok, 16)
    with pytest.raises(InvalidArgument, match="at least 1; got \\[4, 0\\]"):
        Probes.builtin_split(tok, [4, 0])
    n = len(BUILTIN_SNIPPETS)
    with pytest.raises(InvalidArgument, match=rf"{n + 1} probes asked for in all.*too few \(it has {n}\)"):
        Probes.builtin_split(tok, (n - 10, 11))
    everything = Probes.builtin(tok, n=None)
    with pytest.raises(InvalidArgument, match=rf"too few \(0 of its {n} texts are not in exclude\)"):
        Probes.builtin_split(tok, (1,), exclude=everything)
    with pytest.raises(InvalidArgument, match="exclude: expected token Probes.*tensor probes"):
        Probes.builtin_split(tok, (1,), exclude=Probes.from_tensors(torch.randn(2, 3)))
    with pytest.raises(InvalidArgument, match="tags: none of \\['poetry'\\]"):
        Probes.builtin_split(tok, (1,), tags=["poetry"])


def test_mitigation_calibration_probes_are_disjoint_built_in_probes():
    class Model:
        pass

    tok = TextTokenizer()
    model = Model()
    register_tokenizer(model, tok)
    # Evaluation probes that hold no built-in text: the same 16 probes as before exclusion existed.
    own = Probes.from_texts(tok, ["A text of our own, not in the corpus.", "Another one of ours."])
    assert calibration_probes(model, own).fingerprint() == Probes.builtin(tok, 16, max_length=64, seed=1).fingerprint()
    # The default evaluation probes share texts with those 16: they are replaced by the next ones.
    default = Probes.builtin(tok)
    calibration = calibration_probes(model, default)
    assert len(calibration) == 16
    assert not {_source_text(ids) for ids in default.token_ids} & {_source_text(ids) for ids in calibration.token_ids}
    # No room left in the corpus, or no tokenizer known: calibrate on the evaluation probes themselves.
    everything = Probes.builtin(tok, n=None)
    assert calibration_probes(model, everything) is everything
    assert calibration_probes(Model(), own) is own


def test_repr_summarises_the_set_without_token_ids():
    probes = Probes.builtin(CharTokenizer(), n=4, max_length=16, seed=3)
    tokens = sum(len(ids) for ids in probes.token_ids)
    tag_names = ", ".join(dict.fromkeys(probes.tags))
    assert repr(probes) == f"Probes('{probes.name}', 4 probes, {tokens:,} tokens, tags: {tag_names})"
    # Six distinct tags: the first five are named in order of appearance, the sixth elided.
    texts = ["def f(): pass", "a short story", "x = 1", "select 1", "2 + 2", "{}", "rust"]
    tags = ["code", "prose", "code", "sql", "math", "json", "rust"]
    many = Probes.from_texts(CharTokenizer(), texts, tags=tags, name="mine")
    tokens = sum(len(ids) for ids in many.token_ids)
    assert repr(many) == f"Probes('mine', 7 probes, {tokens:,} tokens, tags: code, prose, sql, math, json, ...)"
    assert "[" not in repr(many)  # no list of token ids
    tensors = Probes.from_tensors(torch.zeros(3, 5), tags=["a", "b", "a"])
    assert repr(tensors) == f"Probes('{tensors.name}', 3 probes, inputs (3, 5), tags: a, b)"
