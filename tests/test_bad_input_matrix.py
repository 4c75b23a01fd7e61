"""The bad-input matrix: every way a user can misuse the library, one test per case.

Each case asserts the exception type, that the message names the cause AND the fix, that the
models passed in are untouched, and, for files, that no partial or temporary file remains and an
existing file is byte-identical. Plugin-level cases (marker, precedence, --hemorrhage-update,
interrupted recording under pytest) are in tests/plugin/test_bad_input_plugin.py.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from tiny_models import VOCAB, random_token_ids, tiny_gpt2, tiny_llama

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageDetected, HemorrhageError, InvalidArgument, SnapshotError
from pytest_hemorrhage.modify import expand
from pytest_hemorrhage.probes import Probes, register_tokenizer
from pytest_hemorrhage.snapshot import _content_sha256, load_snapshot, record_snapshot, snapshot_path
from pytest_hemorrhage.validate import (
    check_context_length,
    check_token_ids,
    check_tokenizers,
    context_limit,
    is_out_of_memory,
)

pytestmark = pytest.mark.usefixtures("one_thread")

UPDATE = "--hemorrhage-update"
N_PROBES, LENGTH = 8, 16


@pytest.fixture
def model(llama):
    """The module's tiny Llama (tests only ever modify copies of it)."""
    return llama


@pytest.fixture
def probes():
    return random_token_ids(N_PROBES, LENGTH)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, llama):
    """(path, Snapshot) of the tiny model on ``probes()``, recorded once; tests copy the bytes."""
    path = tmp_path_factory.mktemp("snap") / "base.safetensors"
    return path, record_snapshot(llama, random_token_ids(N_PROBES, LENGTH), path)


@pytest.fixture
def candidate(model):
    return copy.deepcopy(model)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_untouched(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    torch.testing.assert_close(dict(model.state_dict()), before, rtol=0, atol=0, equal_nan=True)


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))  # hidden temporary files included


def _message(exc_type: type[BaseException], fn, *args, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    return str(info.value)


class VocabTokenizer:
    """A tokenizer reduced to what vocabulary checks read: ``get_vocab()``."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = list(tokens)

    def get_vocab(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}


class NoBlocks(torch.nn.Module):
    """A custom causal LM without an nn.ModuleList of blocks."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(32, 8)
        self.mix = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 32)
        self.eval()

    def forward(self, input_ids, attention_mask=None):
        return self.head(torch.tanh(self.mix(self.embed(input_ids))))


# ====================================================================== models and outputs
def test_nan_from_candidate_fails_naming_the_first_layer(model, candidate):
    with torch.no_grad():
        candidate.model.layers[2].mlp.down_proj.weight[0, 0] = float("nan")
    before_b, before_c = _state(model), _state(candidate)
    with pytest.raises(HemorrhageDetected) as info:
        ph.assert_no_hemorrhage(model, candidate, random_token_ids(4, 12))
    msg = str(info.value)
    assert "non-finite values (NaN/Inf)" in msg and "first in model.layers.2" in msg
    assert info.value.report.nonfinite == {"layer": "model.layers.2", "where": "activations"}
    assert "restored" in msg and "model.layers.2.mlp.down_proj" in msg  # the verified fix
    _assert_untouched(model, before_b)
    _assert_untouched(candidate, before_c)


def test_inf_in_candidate_logits_fails_naming_the_output(model, candidate):
    with torch.no_grad():
        candidate.lm_head.weight[3] = float("inf")
    with pytest.raises(HemorrhageDetected) as info:
        ph.assert_no_hemorrhage(model, candidate, random_token_ids(3, 12), layers=None)
    assert "non-finite values (NaN/Inf), first in output logits" in str(info.value)


def test_vocabulary_mismatch_names_both_sizes_and_the_fix(model):
    # Found from the models' output rows before any forward pass, so named by sizes, not output shapes.
    other = tiny_llama(vocab=VOCAB + 2)
    msg = _message(HemorrhageError, ph.compare, model, other, random_token_ids(2, 9), layers=None)
    assert "vocabulary mismatch" in msg and f"has {VOCAB} token ids" in msg and f"LlamaForCausalLM {VOCAB + 2}" in msg
    assert "same vocabulary" in msg and "same tokenizer" in msg


def test_tokenizer_mismatch_names_sizes_and_first_differing_token(model, candidate):
    base, cand = copy.deepcopy(model), candidate
    register_tokenizer(base, VocabTokenizer(["<s>", "alpha", "beta", "gamma", "eps"]))
    register_tokenizer(cand, VocabTokenizer(["<s>", "alpha", "beta", "delta"]))
    msg = _message(HemorrhageError, check_tokenizers, base, cand)
    assert msg.startswith("tokenizer mismatch")
    assert "the baseline tokenizer has 5 tokens, the candidate tokenizer 4" in msg
    assert "first difference at id 3: baseline 'gamma', candidate 'delta'" in msg
    assert "share one tokenizer" in msg and "register_tokenizer" in msg


def test_tokenizer_checks_pass_when_vocabularies_agree_or_are_unknown(model, candidate):
    base = copy.deepcopy(model)
    check_tokenizers(base, candidate)  # nothing registered: nothing to compare
    register_tokenizer(base, VocabTokenizer(["a", "b"]))
    check_tokenizers(base, candidate)  # one side unknown
    register_tokenizer(candidate, VocabTokenizer(["a", "b"]))  # another object, same vocabulary
    check_tokenizers(base, candidate, Probes.from_token_ids([[0, 1]]))


def test_tokenizer_of_the_probes_is_checked_too(model, candidate):
    base = copy.deepcopy(model)
    register_tokenizer(base, VocabTokenizer(["a", "b", "c"]))
    probes = Probes.from_token_ids([[0, 1, 2]])
    probes.tokenizer = VocabTokenizer(["a", "b", "c", "d"])
    msg = _message(HemorrhageError, check_tokenizers, base, candidate, probes)
    assert "the baseline tokenizer has 3 tokens, the probes tokenizer 4" in msg
    assert "first difference at id 3: baseline None, probes 'd'" in msg


def test_real_tokenizer_with_an_added_token_is_a_mismatch(hemorrhage_default_model, model, candidate):
    _, tokenizer = hemorrhage_default_model
    grown = copy.deepcopy(tokenizer)
    grown.add_tokens(["<hemorrhage-new-token>"])
    size = len(tokenizer.get_vocab())
    base = copy.deepcopy(model)  # tiny stand-ins: only the registered tokenizers are compared
    register_tokenizer(base, tokenizer)
    register_tokenizer(candidate, grown)
    msg = _message(HemorrhageError, check_tokenizers, base, candidate)
    assert f"has {size} tokens, the candidate tokenizer {size + 1}" in msg
    assert f"first difference at id {size}: baseline None, candidate '<hemorrhage-new-token>'" in msg
    assert len(tokenizer.get_vocab()) == size  # the shared tokenizer was not modified


def test_tokenizer_mismatch_against_a_snapshot(tmp_path, model, probes, candidate):
    path = tmp_path / "tok.safetensors"
    snap = record_snapshot(model, probes, path, tokenizer=VocabTokenizer(["a", "b", "c"]))
    register_tokenizer(candidate, VocabTokenizer(["a", "b", "z"]))
    msg = _message(HemorrhageError, check_tokenizers, load_snapshot(path), candidate)
    assert "tokenizer mismatch" in msg and str(path) in msg and UPDATE in msg and "share one tokenizer" in msg
    register_tokenizer(candidate, VocabTokenizer(["a", "b", "c"]))
    check_tokenizers(snap, candidate)


def test_compare_against_a_snapshot_rejects_a_tokenizer_mismatch(tmp_path, model, probes, candidate):
    """Needs check_tokenizers(snapshot, candidate, probes) wired into the snapshot branch of compare()."""
    snap = record_snapshot(model, probes, tmp_path / "tok.safetensors", tokenizer=VocabTokenizer(["a", "b", "c"]))
    register_tokenizer(candidate, VocabTokenizer(["a", "b", "z"]))
    msg = _message(HemorrhageError, ph.compare, snap, candidate)
    assert "tokenizer mismatch" in msg and UPDATE in msg


def test_compare_rejects_a_tokenizer_mismatch(model, candidate):
    """Needs check_tokenizers wired into compare()."""
    base = copy.deepcopy(model)
    register_tokenizer(base, VocabTokenizer(["<s>", "alpha", "beta", "gamma"]))
    register_tokenizer(candidate, VocabTokenizer(["<s>", "alpha", "beta", "delta"]))
    before = _state(base)
    msg = _message(HemorrhageError, ph.compare, base, candidate, random_token_ids(2, 8))
    assert "tokenizer mismatch" in msg and "'gamma'" in msg and "'delta'" in msg
    _assert_untouched(base, before)


def test_no_decoder_blocks_in_a_custom_module():
    net = NoBlocks()
    msg = _message(InvalidArgument, expand, net, count=1)
    assert "no nn.ModuleList of same-class blocks" in msg and "decoder blocks live in one nn.ModuleList" in msg
    msg = _message(InvalidArgument, ph.compare, net, copy.deepcopy(net), random_token_ids(2, 6, vocab=32),
                   layers="blocks.*")
    assert "no module of NoBlocks is named 'blocks.*'" in msg and "embed, mix, head" in msg
    assert "named_modules()" in msg
    # "auto" finds no blocks: outputs are still compared, and no layer is reported.
    report = ph.compare(net, copy.deepcopy(net), random_token_ids(2, 6, vocab=32), layers="auto")
    assert report.layers == [] and report.passed


@pytest.mark.parametrize("empty", [[], torch.zeros(0, 5, dtype=torch.long), "from_token_ids"],
                         ids=["list", "tensor", "Probes"])
def test_empty_probes(model, candidate, empty):
    if empty == "from_token_ids":
        msg = _message(InvalidArgument, Probes.from_token_ids, [])
    else:
        msg = _message(InvalidArgument, ph.compare, model, candidate, empty)
    assert "empty" in msg and "at least one probe" in msg


def test_one_token_probe(model, candidate):
    msg = _message(InvalidArgument, ph.compare, model, candidate, [[1, 2, 3], [7]])
    assert "probe 1 has 1 token(s)" in msg and "at least 2 tokens" in msg and "longer text" in msg


def _with_config(**config) -> NoBlocks:
    net = NoBlocks()
    net.config = SimpleNamespace(**config)
    return net


@pytest.mark.parametrize("make, key", [(tiny_gpt2, "config.max_position_embeddings"),  # HF alias of n_positions
                                       (tiny_llama, "config.max_position_embeddings"),
                                       (lambda: _with_config(n_positions=256), "config.n_positions"),
                                       (lambda: _with_config(n_ctx=256, n_positions=None), "config.n_ctx")],
                         ids=["gpt2", "llama", "n_positions", "n_ctx"])
def test_probes_longer_than_the_context(make, key):
    net = make()
    assert context_limit(net) == (256, key)
    long_probes = [[1] * 10, [2] * 256, [3] * 300, [4] * 400]
    msg = _message(InvalidArgument, check_context_length, net, long_probes)
    assert "probe 2 has 300 tokens" in msg and "256-token context" in msg and key in msg
    assert "(1 more probes too)" in msg
    assert "Probes.builtin(tokenizer, max_length=256)" in msg and "truncate" in msg
    check_context_length(net, long_probes[:2])  # exactly the context is fine
    check_context_length(net, torch.zeros(2, 300))  # tensor probes: nothing to check


def test_models_without_a_context_limit_are_not_checked():
    long_probes = [[1] * 5000]
    for net in (NoBlocks(), _with_config(max_position_embeddings=None), _with_config(n_positions=True)):
        assert context_limit(net) is None
        check_context_length(net, long_probes)


def test_compare_rejects_probes_longer_than_the_context():
    """Needs check_context_length wired into compare() (GPT-2 otherwise fails with an IndexError)."""
    net = tiny_gpt2()
    msg = _message(InvalidArgument, ph.compare, net, copy.deepcopy(net), random_token_ids(2, 300))
    assert "probe 0 has 300 tokens" in msg and "max_length=256" in msg


def test_record_snapshot_rejects_probes_longer_than_the_context(tmp_path):
    """Needs check_context_length wired into record_snapshot() (GPT-2 otherwise fails with an IndexError)."""
    msg = _message(InvalidArgument, record_snapshot, tiny_gpt2(), random_token_ids(2, 300), tmp_path / "s.safetensors")
    assert "probe 0 has 300 tokens" in msg and "max_length=256" in msg
    assert _listing(tmp_path) == []


def test_token_ids_outside_the_vocabulary(model):
    msg = _message(InvalidArgument, check_token_ids, model, [[1, 2, 3], [4, VOCAB + 5, 6]])
    assert f"probe 1 holds token id {VOCAB + 5}" in msg and f"ids 0-{VOCAB - 1}" in msg
    assert "Tokenize the probes with this model's tokenizer" in msg
    assert "probe 0 holds token id -1" in _message(InvalidArgument, check_token_ids, model, [[-1, 2]])
    check_token_ids(model, [[0, VOCAB - 1]])


def test_compare_rejects_token_ids_outside_the_vocabulary(model, candidate):
    """Needs check_token_ids wired into compare() (otherwise the embedding raises an IndexError)."""
    msg = _message(InvalidArgument, ph.compare, model, candidate, [[1, 2, 3], [4, 999, 6]])
    assert "probe 1 holds token id 999" in msg


def test_same_object_passed_twice(model):
    msg = _message(HemorrhageError, ph.compare, model, model, random_token_ids(2, 8))
    assert "same model object was passed twice" in msg and "copy.deepcopy(baseline)" in msg


def test_parameters_shared_between_baseline_and_candidate(model):
    cand = tiny_llama(seed=1)
    cand.model.layers[0].mlp.up_proj.weight = model.model.layers[0].mlp.up_proj.weight
    before = _state(model)
    msg = _message(HemorrhageError, ph.compare, model, cand, random_token_ids(2, 8))
    assert "share parameter storage" in msg and "model.layers.0.mlp.up_proj.weight" in msg
    assert "applied in place" in msg and "copy.deepcopy(baseline)" in msg
    _assert_untouched(model, before)


def test_model_on_the_meta_device(model):
    with torch.device("meta"):
        meta = tiny_llama()
    msg = _message(HemorrhageError, ph.compare, model, meta, random_token_ids(2, 8))
    assert "candidate: parameter" in msg and "meta device" in msg and "load real weights" in msg


@pytest.mark.parametrize("exc, expected", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                  "you tried to allocate 9000000000 bytes"), True),
    (RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"), True),
    (MemoryError(), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"), False),
    (ValueError("out of memory"), False),  # not an allocation failure type
    (KeyboardInterrupt(), False),
])
def test_is_out_of_memory(exc, expected):
    assert is_out_of_memory(exc) is expected


def _oom_above(monkeypatch, net: torch.nn.Module, rows: int, calls: list[int]) -> None:
    """Make ``net``'s forward raise torch.OutOfMemoryError for batches of more than ``rows`` rows."""
    real = net.forward

    def forward(input_ids, *args, **kwargs):
        calls.append(input_ids.shape[0])
        if input_ids.shape[0] > rows:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {input_ids.shape[0]} GiB")
        return real(input_ids, *args, **kwargs)

    monkeypatch.setattr(net, "forward", forward)


def test_out_of_memory_halves_the_batch_and_matches_a_smaller_run(model, candidate, monkeypatch):
    """Needs the OOM contract in compare(): split, retry, warn, record the batch size used."""
    probes = random_token_ids(16, 12, seed=3)
    with torch.no_grad():
        candidate.model.layers[1].mlp.down_proj.weight.mul_(1.5)
    expected = ph.compare(model, candidate, probes, batch_size=4)
    before_b, before_c = _state(model), _state(candidate)
    calls: list[int] = []
    _oom_above(monkeypatch, candidate, 4, calls)
    with pytest.warns(UserWarning, match=r"out of memory at batch size 8; continuing with batch size 4"):
        report = ph.compare(model, candidate, probes, batch_size=8)
    assert report.identity["batch_size"] == 4
    assert calls[0] == 8 and max(calls[1:]) == 4  # later batches use the halved size
    for name, metric in expected.metrics.items():
        assert report.metrics[name].estimate == pytest.approx(metric.estimate, rel=1e-9, abs=1e-12), name
        assert report.metrics[name].ci_high == pytest.approx(metric.ci_high, rel=1e-9, abs=1e-12), name
    for a, b in zip(report.layers, expected.layers):
        assert a.sqnr_db == pytest.approx(b.sqnr_db, rel=1e-9)
    monkeypatch.undo()
    _assert_untouched(model, before_b)
    _assert_untouched(candidate, before_c)


def test_out_of_memory_at_batch_size_one_is_an_error(model, candidate, monkeypatch):
    """Needs the OOM contract in compare(): at batch size 1 a HemorrhageError names the fix."""
    calls: list[int] = []
    _oom_above(monkeypatch, candidate, 0, calls)
    with pytest.warns(UserWarning, match="out of memory"):
        msg = _message(HemorrhageError, ph.compare, model, candidate, random_token_ids(4, 8), batch_size=2)
    assert "out of memory with a single probe per batch" in msg and "max_length" in msg
    assert calls[-1] == 1


def test_other_errors_in_a_batch_are_not_retried(model, candidate, monkeypatch):
    calls: list[int] = []

    def forward(input_ids, *args, **kwargs):
        calls.append(input_ids.shape[0])
        raise RuntimeError("an unrelated kernel failure")

    monkeypatch.setattr(candidate, "forward", forward)
    with pytest.raises(RuntimeError, match="an unrelated kernel failure"):
        ph.compare(model, candidate, random_token_ids(4, 8), batch_size=4)
    assert calls == [4]


def test_bad_thresholds_and_settings(model, candidate):
    msg = _message(InvalidArgument, ph.compare, model, candidate, random_token_ids(2, 8), max_kll=0.1)
    # One unknown key reads "key" and names the closest known one.
    assert "unknown threshold key max_kll (did you mean max_kl?)" in msg and "known keys:" in msg
    msg = _message(InvalidArgument, ph.compare, model, candidate, random_token_ids(2, 8), max_kl=-1)
    assert "max_kl=-1" in msg and "allowed range [0.0, inf]" in msg
    msg = _message(InvalidArgument, ph.compare, model, candidate, random_token_ids(2, 8), batch_size=0)
    assert "batch_size" in msg and "positive integer" in msg


def test_strings_or_unknown_objects_as_probes(model, candidate):
    msg = _message(InvalidArgument, ph.compare, model, candidate, ["some text", "more"])
    assert "got strings" in msg and "Probes.from_texts(tokenizer, texts)" in msg
    msg = _message(InvalidArgument, ph.compare, model, candidate, {"a": 1})
    assert "cannot use a dict" in msg and "pass Probes" in msg
    msg = _message(InvalidArgument, ph.compare, model, candidate)
    assert "no tokenizer is known" in msg and "Probes.builtin(tokenizer)" in msg


# ====================================================================== snapshot files
def _split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _rewritten(recorded, **changes) -> bytes:
    """The recorded snapshot with tensors or metadata changed and a matching content hash."""
    path, snap = recorded
    tensors = {k: v.clone() for k, v in st_load(path.read_bytes()).items()}
    for name, fn in changes.pop("tensors", {}).items():
        fn(tensors[name])
    meta = dict(snap.meta, content_sha256=_content_sha256(tensors), **changes)
    return st_save(tensors, metadata={"hemorrhage": json.dumps(meta)})


def _load_bad(tmp_path: Path, data: bytes, **kwargs) -> str:
    """Load a bad file; check the error, that nothing was written, and that the file is unchanged."""
    folder = tmp_path / "snaps"
    folder.mkdir(exist_ok=True)
    path = folder / "bad.safetensors"
    path.write_bytes(data)
    msg = _message(SnapshotError, load_snapshot, path, **kwargs)
    assert _listing(folder) == ["bad.safetensors"] and path.read_bytes() == data
    return msg


@pytest.mark.parametrize("cut", ["empty", "in the length field", "mid-header", "mid-body", "last byte"])
def test_truncated_snapshot(tmp_path, recorded, cut):
    data = recorded[0].read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    end = {"empty": 0, "in the length field": 5, "mid-header": 8 + n // 2,
           "mid-body": (8 + n + len(data)) // 2, "last byte": len(data) - 1}[cut]
    msg = _load_bad(tmp_path, data[:end])
    assert "truncated" in msg and UPDATE in msg


def test_snapshot_of_an_unknown_version(tmp_path, recorded):
    msg = _load_bad(tmp_path, _rewritten(recorded, version=2))
    assert "format version 2" in msg and "reads version 1" in msg
    assert "Install the version that wrote it" in msg and UPDATE in msg


def test_tampered_snapshot(tmp_path, recorded):
    data = bytearray(recorded[0].read_bytes())
    data[-100] ^= 0x40
    msg = _load_bad(tmp_path, bytes(data))
    assert "modified after it was written (content hash mismatch)" in msg
    assert "restore it from version control" in msg and UPDATE in msg


@pytest.mark.parametrize("size", [2**63, 16 * 1024 * 1024 + 1])
def test_snapshot_with_an_absurd_header(tmp_path, recorded, size):
    data = recorded[0].read_bytes()
    msg = _load_bad(tmp_path, struct.pack("<Q", size) + data[8:])
    assert f"claims a {size}-byte header" in msg and "damaged or not a snapshot" in msg and UPDATE in msg


def test_snapshot_with_an_absurd_tensor_shape(tmp_path, recorded):
    header, body = _split(recorded[0].read_bytes())
    header["norms"]["shape"] = [2**39, 2**39]
    raw = json.dumps(header).encode()
    msg = _load_bad(tmp_path, struct.pack("<Q", len(raw)) + raw + body)
    assert "'norms'" in msg and UPDATE in msg


def test_snapshot_with_nans(tmp_path, recorded):
    def poison(t):
        t.view(-1)[3] = float("nan")

    msg = _load_bad(tmp_path, _rewritten(recorded, tensors={"target_logp": poison}))
    assert "'target_logp' holds NaN or Inf values" in msg and UPDATE in msg


def test_snapshot_escaping_its_folder(tmp_path, recorded):
    root = tmp_path / "snaps"
    root.mkdir()
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(recorded[0].read_bytes())
    (root / "link.safetensors").symlink_to(outside)
    for path in ("../outside.safetensors", outside, root / "sub" / ".." / ".." / "outside.safetensors",
                 "link.safetensors"):
        msg = _message(SnapshotError, load_snapshot, path, root=root)
        assert "escapes the snapshot folder" in msg and "plain names inside that folder" in msg
    assert _listing(root) == ["link.safetensors"] and _listing(tmp_path) == ["outside.safetensors", "snaps"]


def test_snapshot_recorded_with_other_probes(recorded, candidate):
    snap = load_snapshot(recorded[0])
    msg = _message(SnapshotError, ph.compare, snap, candidate, random_token_ids(N_PROBES, LENGTH, seed=7))
    assert "does not match the current run" in msg and "probe hash differs" in msg and UPDATE in msg


def _interrupt_on_second_call(module: torch.nn.Module) -> torch.utils.hooks.RemovableHandle:
    calls = []

    def hook(_mod, _inp, _out):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    return module.register_forward_hook(hook)


@pytest.mark.parametrize("existing", [True, False], ids=["old-baseline", "no-file"])
def test_keyboard_interrupt_while_recording(tmp_path, model, probes, existing):
    folder = tmp_path / "snaps"
    path = folder / "base.safetensors"
    if existing:
        record_snapshot(model, probes, path)
    before = path.read_bytes() if existing else None
    base = copy.deepcopy(model)
    with torch.no_grad():
        base.model.layers[3].mlp.down_proj.weight.mul_(2.0)  # a new baseline, so a rewrite would show
    handle = _interrupt_on_second_call(base.model.layers[1])
    try:
        with pytest.raises(KeyboardInterrupt):
            record_snapshot(base, probes, path, batch_size=4)
    finally:
        handle.remove()
    if existing:
        assert _listing(folder) == ["base.safetensors"] and path.read_bytes() == before
        load_snapshot(path).check_identity(baseline=model)
    else:
        assert not folder.exists() or _listing(folder) == []
    assert base.training is False


def test_nan_baseline_is_not_recorded_over_an_old_snapshot(tmp_path, model, probes):
    path = tmp_path / "base.safetensors"
    record_snapshot(model, probes, path)
    before = path.read_bytes()
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.model.layers[2].mlp.down_proj.weight[0, 0] = float("nan")
    msg = _message(SnapshotError, record_snapshot, broken, probes, path)
    assert "NaN log-probabilities" in msg and "fix the baseline before recording it" in msg
    assert _listing(tmp_path) == ["base.safetensors"] and path.read_bytes() == before


# ====================================================================== security
_UNPICKLERS = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword_is_true(call: ast.Call, name: str) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def unsafe_deserialisation(source: str, filename: str = "<source>") -> list[str]:
    """Places in ``source`` that can unpickle: pickle-like imports, torch.load without
    weights_only=True, numpy.load with allow_pickle=True, any *pickle* call (pandas.read_pickle)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in _UNPICKLERS]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in _UNPICKLERS:
                found.append(f"{where}: from {module} import")
            if module.split(".")[0] == "torch" and any(a.name == "load" for a in node.names):
                found.append(f"{where}: from {module} import load")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            root, last = name.split(".")[0], name.rsplit(".", 1)[-1]
            if root == "torch" and last == "load" and not _keyword_is_true(node, "weights_only"):
                found.append(f"{where}: {name}() without weights_only=True")
            elif root in ("np", "numpy") and last == "load" and _keyword_is_true(node, "allow_pickle"):
                found.append(f"{where}: {name}(allow_pickle=True)")
            elif "pickle" in name.lower():
                found.append(f"{where}: {name}()")
    return found


def test_the_scanner_finds_every_kind_of_unpickling():
    bad = """
import pickle
import dill as d
from joblib import load
from torch import load as tl
x = torch.load(f)
y = torch.load(f, weights_only=False)
z = torch.serialization.load(f)
w = np.load(f, allow_pickle=True)
v = pd.read_pickle(f)
"""
    assert len(unsafe_deserialisation(bad)) == 9
    safe = """
import json
from safetensors.torch import load
a = torch.load(f, weights_only=True)
b = np.load(f)
c = load(data)
d = json.loads(s)
"""
    assert unsafe_deserialisation(safe) == []


def test_the_package_never_unpickles():
    package = Path(ph.__file__).parent
    files = sorted(package.rglob("*.py"))
    assert len(files) > 10
    found = [hit for f in files for hit in unsafe_deserialisation(f.read_text(encoding="utf-8"), str(f))]
    assert found == [], "unsafe deserialisation in the package:\n" + "\n".join(found)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "tests/a.py::t[x\x00y]",
                                  "tests/test_x.py::test[" + "p" * 1000 + "]", "é" * 300, "..", ""],
                         ids=["dotdot", "absolute", "nul", "very-long", "non-ascii-long", "parent", "empty"])
def test_snapshot_names_from_test_ids_are_sanitised(tmp_path, name):
    root = tmp_path / "snaps"
    path = snapshot_path(root, name)
    assert path.parent == root.resolve()
    assert len(path.name.encode()) <= 255 and not path.name.startswith(".")
    assert "/" not in path.name and "\x00" not in path.name and path.name.endswith(".safetensors")
    root.mkdir()
    path.write_bytes(b"x")  # a name the file system accepts
    assert _listing(root) == [path.name] and _listing(tmp_path) == ["snaps"]
    if len(name) > 200:  # long ids sharing a prefix stay apart
        assert snapshot_path(root, name + "2") != path
