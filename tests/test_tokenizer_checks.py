"""Tokenizers that do not belong to the models are refused before any forward pass, unless allowed.

Each test reproduces a way a wrong tokenizer or vocabulary used to give a confident verdict (or
blame the wrong thing), on tiny random models and tokenizers built here.
"""

import copy
import warnings

import pytest
import torch
from model_folders import bert_tokenizer, save_model_folder
from tiny_models import VOCAB, random_token_ids, tiny_llama
from transformers import AutoModelForCausalLM, AutoTokenizer, BertConfig, BertLMHeadModel, PreTrainedTokenizerFast

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageError, InvalidArgument, SnapshotError
from pytest_hemorrhage.probes import Probes, register_tokenizer, tokenizer_for
from pytest_hemorrhage.validate import check_tokenizers

TEXTS = ["the model reads a text and the text is short", "a short text about the model and its data"] * 4
ALLOW = "allow_tokenizer_mismatch=True"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny Llama saved with its own (word-level) tokenizer."""
    return save_model_folder(tiny_llama(), tmp_path_factory.mktemp("llama") / "model")


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A BERT tokenizer loaded from its folder (so it knows where it came from)."""
    where = tmp_path_factory.mktemp("bert") / "tokenizer"
    bert_tokenizer(where)
    return AutoTokenizer.from_pretrained(where, local_files_only=True)


class CountingForwards:
    """Counts forward passes of the models it watches."""

    def __init__(self, *models: torch.nn.Module) -> None:
        self.calls = 0
        self.handles = [m.register_forward_hook(self._count) for m in models]

    def _count(self, *_: object) -> None:
        self.calls += 1


# ---------------------------------------------------------------------- probes from another tokenizer
def test_probes_from_a_bert_tokenizer_against_a_model_with_its_own_tokenizer_fail(folder, bert):
    model = AutoModelForCausalLM.from_pretrained(folder)  # its tokenizer is found in its folder
    candidate = copy.deepcopy(model)
    probes = Probes.from_texts(bert, TEXTS)
    assert max(max(ids) for ids in probes.token_ids) < VOCAB  # every id is valid: nothing else would catch it
    watch = CountingForwards(model, candidate)
    with pytest.raises(HemorrhageError) as info:
        ph.compare(model, candidate, probes)
    msg = str(info.value)
    assert msg.startswith("tokenizer mismatch: the baseline tokenizer has 121 tokens, the probes tokenizer 40")
    assert "first difference at id 0: baseline '[UNK]', probes '[PAD]'" in msg
    assert f"(baseline tokenizer from {folder}; probes tokenizer from {bert.name_or_path})" in msg
    assert "build the probes with it" in msg and ALLOW in msg and "--allow-tokenizer-mismatch" in msg
    assert watch.calls == 0


def test_an_allowed_tokenizer_mismatch_runs_and_says_so(folder, bert):
    model = AutoModelForCausalLM.from_pretrained(folder)
    probes = Probes.from_texts(bert, TEXTS)
    with pytest.warns(UserWarning, match="allowed .allow_tokenizer_mismatch=True.: tokenizer mismatch"):
        report = ph.compare(model, copy.deepcopy(model), probes, allow_tokenizer_mismatch=True)
    assert report.passed and report.metrics["kl"].estimate < 1e-6  # the confident verdict, now on purpose
    assert any(note.startswith("allowed (allow_tokenizer_mismatch=True): tokenizer mismatch") for note in report.notes)
    assert "note: allowed (allow_tokenizer_mismatch=True)" in report.to_text()
    with pytest.raises(InvalidArgument, match="allow_tokenizer_mismatch: must be True or False, got 1"):
        ph.compare(model, copy.deepcopy(model), probes, allow_tokenizer_mismatch=1)


def test_the_fixture_and_assert_keywords_reach_the_check(folder, bert):
    model = AutoModelForCausalLM.from_pretrained(folder)
    probes = Probes.from_texts(bert, TEXTS)
    with pytest.raises(HemorrhageError, match="tokenizer mismatch"):
        ph.assert_no_hemorrhage(model, copy.deepcopy(model), probes, suggest=False)
    with pytest.warns(UserWarning, match="allowed"):
        assert ph.assert_no_hemorrhage(model, copy.deepcopy(model), probes, allow_tokenizer_mismatch=True).passed


def test_probes_tokenizer_start_token_against_the_model_config(bert):
    # Nothing is known of the model's tokenizer: its config still says which id starts a text.
    model = tiny_llama()
    assert tokenizer_for(model) is None and model.config.bos_token_id == 1
    probes = Probes.from_texts(bert, TEXTS)
    with pytest.raises(HemorrhageError) as info:
        ph.compare(model, copy.deepcopy(model), probes)
    msg = str(info.value)
    assert f"the probes tokenizer (from {bert.name_or_path}) marks the start of a text with id 2 ('[CLS]')" in msg
    assert "the baseline LlamaForCausalLM with config.bos_token_id = 1" in msg
    assert "not that model's tokenizer" in msg and ALLOW in msg


def _tokenizer_with(bos: str | None, eos: str | None, size: int = 20) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``<pad> <s> </s> w3 w4 ...`` with the given start and end tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<s>", "</s>", *[f"w{i}" for i in range(3, size)]]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<pad>", bos_token=bos, eos_token=eos)


def test_special_tokens_that_agree_with_the_config_pass_and_others_fail():
    model = tiny_llama()  # config.bos_token_id 1, eos_token_id 2
    probes = [[1, 5, 6, 7], [1, 8, 9, 2]]
    matching = _tokenizer_with("<s>", "</s>")
    check_tokenizers(model, copy.deepcopy(model), _carrying(probes, matching))
    swapped = _tokenizer_with("</s>", "<s>")
    with pytest.raises(HemorrhageError, match=r"marks the start of a text with id 2 \('</s>'\), the baseline "
                                              r"LlamaForCausalLM with config.bos_token_id = 1"):
        check_tokenizers(model, copy.deepcopy(model), _carrying(probes, swapped))
    no_start = _tokenizer_with(None, "<s>")
    with pytest.raises(HemorrhageError, match=r"marks the end of a text with id 1 .* config.eos_token_id = 2"):
        check_tokenizers(model, copy.deepcopy(model), _carrying(probes, no_start))
    # A list of end ids (chat models) and ids past the vocabulary (a config's unset default) are understood.
    listed = copy.deepcopy(model)
    listed.config.eos_token_id = [7, 2]
    listed.config.bos_token_id = 50256
    check_tokenizers(listed, copy.deepcopy(listed), _carrying(probes, _tokenizer_with("<pad>", "</s>")))


def _carrying(token_ids: list[list[int]], tokenizer: object) -> Probes:
    probes = Probes.from_token_ids(token_ids)
    probes.tokenizer = tokenizer
    return probes


def test_a_tokenizer_larger_than_the_model_vocabulary_fails_even_when_the_ids_fit():
    model = tiny_llama(vocab=32)
    big = _tokenizer_with(None, None, size=40)  # no special tokens to compare: the size decides
    probes = _carrying([[3, 4, 5], [6, 7, 8]], big)  # ids all inside the model's 32
    with pytest.raises(HemorrhageError) as info:
        ph.compare(model, copy.deepcopy(model), probes)
    assert "the probes tokenizer has 40 tokens, more than the 32 token ids of the baseline LlamaForCausalLM " \
           "(output embedding rows)" in str(info.value)
    smaller = _tokenizer_with(None, None, size=30)  # an embedding padded past the tokenizer is common
    assert ph.compare(model, copy.deepcopy(model), _carrying([[3, 4, 5], [6, 7, 8]], smaller)).passed


def test_probes_built_by_a_tokenizer_carry_it():
    tok = _tokenizer_with("<s>", "</s>")
    built = [Probes.from_texts(tok, ["w3 w4 w5", "w6 w7"]), Probes.builtin(tok, n=4),
             Probes.builtin_split(tok, (2, 2))[1]]
    assert all(p.tokenizer is tok for p in built)
    assert built[1].subset([0, 1]).tokenizer is tok
    assert Probes.from_token_ids([[1, 2]]).tokenizer is None
    # The tokenizer is no part of the probes' identity: the same ids are the same probes.
    assert built[0].fingerprint() == Probes.from_token_ids(built[0].token_ids).fingerprint()
    assert "tokenizer" not in repr(built[0]).lower()


# ---------------------------------------------------------------------- a candidate with another vocabulary
def _tiny_bert(vocab: int = 64) -> BertLMHeadModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, is_decoder=True)
    return BertLMHeadModel(config).eval()


def test_a_bert_candidate_is_blamed_on_the_vocabularies_not_the_probes():
    base, candidate = tiny_llama(), _tiny_bert()
    probes = random_token_ids(4, 10)  # ids up to 127: past the BERT's 64
    watch = CountingForwards(base, candidate)
    with pytest.raises(HemorrhageError) as info:
        ph.compare(base, candidate, probes)
    msg = str(info.value)
    assert msg.startswith(f"vocabulary mismatch: the baseline LlamaForCausalLM has {VOCAB} token ids (output "
                          "embedding rows), the candidate BertLMHeadModel 64 (output embedding rows)")
    assert "do not share a vocabulary" in msg and "Tokenize the probes" not in msg
    assert watch.calls == 0


def test_a_snapshot_names_a_candidate_with_another_vocabulary_before_any_forward_pass():
    base = tiny_llama()
    snap = ph.record_snapshot(base, random_token_ids(4, 10))
    candidate = tiny_llama(vocab=VOCAB * 2)
    watch = CountingForwards(candidate)
    with pytest.raises(SnapshotError, match=rf"vocabulary mismatch: the snapshot has {VOCAB} token ids \(recorded "
                                            rf"logits\), the candidate LlamaForCausalLM {VOCAB * 2}"):
        ph.compare(snap, candidate)
    assert watch.calls == 0


# ---------------------------------------------------------------------- your own model: the tokenizer from its folder
def test_a_model_loaded_from_its_folder_builds_the_builtin_probes_with_its_tokenizer(folder):
    model = AutoModelForCausalLM.from_pretrained(folder)
    candidate = copy.deepcopy(model)
    with torch.no_grad():
        candidate.lm_head.weight.mul_(1.05)
    report = ph.compare(model, candidate)  # probes omitted, as in the README
    own = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    expected = ph.compare(model, candidate, Probes.builtin(own))
    assert report.identity["probes_sha256"] == expected.identity["probes_sha256"]
    assert report.metrics["kl"].estimate == expected.metrics["kl"].estimate > 0
    assert tokenizer_for(candidate) is tokenizer_for(model)  # a copy shares its model's folder, read once


def test_a_model_whose_folder_holds_no_tokenizer_says_the_one_line_needed(tmp_path):
    tiny_llama().save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(InvalidArgument) as info:
        ph.compare(model, copy.deepcopy(model))
    msg = str(info.value)
    assert f"no tokenizer is known for the baseline (its folder {tmp_path} holds no tokenizer" in msg
    assert "probes=Probes.builtin(tokenizer)" in msg and "register_tokenizer(model, tokenizer)" in msg
    register_tokenizer(model, _tokenizer_with("<s>", "</s>"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ph.compare(model, copy.deepcopy(model), layers=None).passed


def test_tokenizer_files_that_do_not_load_leave_explicit_probes_working(tmp_path):
    tiny_llama().save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert ph.compare(model, copy.deepcopy(model), random_token_ids(2, 8), layers=None).passed
    with pytest.raises(InvalidArgument, match=r"no tokenizer is known for the baseline \(the tokenizer files in its "
                                              r"folder do not load: .*\); pass probes="):
        ph.compare(model, copy.deepcopy(model))


# ---------------------------------------------------------------------- snapshots record the probes' tokenizer
def test_a_snapshot_recorded_on_texts_keeps_their_tokenizer_and_refuses_another(tmp_path, bert):
    mine = _tokenizer_with("<s>", "</s>", size=60)
    base = tiny_llama()  # no tokenizer registered: the probes' one is recorded
    snap = ph.record_snapshot(base, Probes.from_texts(mine, ["w3 w4 w5 w6", "w7 w8 w9"]), tmp_path / "s.safetensors")
    candidate = copy.deepcopy(base)
    register_tokenizer(candidate, _tokenizer_with("<s>", "</s>", size=50))
    with pytest.raises(HemorrhageError, match=r"tokenizer mismatch: the snapshot .*s.safetensors was recorded with "
                                              r"tokenizer [0-9a-f]{12}, the candidate tokenizer is [0-9a-f]{12}"):
        ph.compare(snap, candidate)
    register_tokenizer(candidate, mine)
    assert ph.compare(snap, candidate).passed
    with pytest.raises(HemorrhageError, match=r"marks the start of a text with id 2 \('\[CLS\]'\)"):
        ph.record_snapshot(base, Probes.from_texts(bert, TEXTS))
    with pytest.warns(UserWarning, match="tokenizer mismatch"):
        ph.record_snapshot(base, Probes.from_texts(bert, TEXTS), allow_tokenizer_mismatch=True)


@pytest.mark.slow
def test_the_original_complaint_bert_probes_against_smollm2_fail_before_any_forward_pass(tmp_path):
    """The report that started these checks: probes from a BERT tokenizer against SmolLM2-135M passed
    with KL 0.0001. Here with BERT's own id layout ([PAD] 0, [unused*], [UNK] 100, [CLS] 101, [SEP] 102,
    [MASK] 103, then words), every id valid for SmolLM2's 49,152-row vocabulary."""
    from transformers import BertTokenizerFast

    from pytest_hemorrhage.corpus import BUILTIN_SNIPPETS
    from pytest_hemorrhage.modify import quantize

    words = list(dict.fromkeys(w for _, text in BUILTIN_SNIPPETS for w in text.lower().split() if w.isalpha()))
    layout = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (tmp_path / "vocab.txt").write_text("\n".join(layout) + "\n")
    bert = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    model, _ = ph.models.default_model()
    probes = Probes.from_texts(bert, [text for _, text in BUILTIN_SNIPPETS[:16]], max_length=64)
    assert max(max(ids) for ids in probes.token_ids) < model.config.vocab_size  # nothing else would catch it
    candidate = quantize(model, bits=8)
    watch = CountingForwards(model, candidate)
    with pytest.raises(HemorrhageError, match="tokenizer mismatch") as info:
        ph.compare(model, candidate, probes)
    assert ALLOW in str(info.value)
    assert watch.calls == 0
