"""Baseline snapshots: recording, loading, comparing against them, and every way a file can be bad.

Every bad input must raise :class:`SnapshotError` whose message names the cause and the fix.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from tiny_models import random_token_ids, tiny_llama

from pytest_hemorrhage.engine import compare
from pytest_hemorrhage.errors import InvalidArgument, SnapshotError
from pytest_hemorrhage.probes import Probes, as_probes
from pytest_hemorrhage.snapshot import (
    FORMAT,
    Snapshot,
    _content_sha256,
    load_snapshot,
    model_identity,
    record_snapshot,
    snapshot_path,
    tokenizer_sha256,
)

pytestmark = pytest.mark.usefixtures("one_thread")


UPDATE = "--hemorrhage-update"
N_PROBES, LENGTH = 16, 24


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.fixture(scope="module")
def probes():
    return random_token_ids(N_PROBES, LENGTH)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, model, probes):
    """(path, the Snapshot record_snapshot returned) for the tiny model, written once per module."""
    path = tmp_path_factory.mktemp("snap") / "base.safetensors"
    snap = record_snapshot(model, probes, path)
    return path, snap


@pytest.fixture
def snap_bytes(recorded):
    return recorded[0].read_bytes()


def _scaled(model, factor, layer=1):
    c = copy.deepcopy(model)
    with torch.no_grad():
        c.model.layers[layer].mlp.down_proj.weight.mul_(factor)
    return c


def _noisy(model, scale=0.3, seed=1):
    c = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in c.parameters():
            p.add_(scale * p.std() * torch.randn(p.shape, generator=g))
    return c


def _split(data: bytes) -> tuple[dict, bytes]:
    """safetensors layout, read by hand: 8-byte little-endian header length, JSON header, body."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _write(tmp_path, data: bytes, name: str = "bad.safetensors"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _load_error(path, **kwargs) -> str:
    with pytest.raises(SnapshotError) as info:
        load_snapshot(path, **kwargs)
    return str(info.value)


def _listing(folder) -> list[str]:
    return sorted(os.listdir(folder))  # os.listdir shows hidden temporary files too


# ---------------------------------------------------------------------- round trip
def test_round_trip_tensors_and_meta_equal(recorded):
    path, snap = recorded
    loaded = load_snapshot(path)
    assert isinstance(loaded, Snapshot)
    assert loaded.path == path
    assert loaded.meta == snap.meta
    assert loaded.meta["format"] == FORMAT
    assert set(loaded.tensors) == set(snap.tensors)
    for name, t in snap.tensors.items():
        assert loaded.tensors[name].dtype == t.dtype, name
        assert torch.equal(loaded.tensors[name], t), name


def test_recorded_quantities_match_an_independent_forward_pass(recorded, model, probes):
    """The stored top-k, target log-probabilities and norms are the baseline's own, exactly."""
    _, snap = recorded
    with torch.no_grad():
        logits = model(probes).logits
        hidden = model(probes, output_hidden_states=True).hidden_states
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = lp.gather(-1, probes[:, 1:].unsqueeze(-1)).squeeze(-1).reshape(-1)
    torch.testing.assert_close(snap.tensors["target_logp"], target, rtol=1e-5, atol=1e-5)
    top = lp.topk(snap.meta["topk"], dim=-1).values.reshape(-1, snap.meta["topk"])
    torch.testing.assert_close(snap.tensors["top_logp"], top, rtol=1e-5, atol=1e-5)
    # Block 0's output is hidden_states[1]; its per-token norms are stored exactly.
    norms0 = hidden[1].float().norm(dim=-1).reshape(-1)
    torch.testing.assert_close(snap.tensors["norms"][0], norms0, rtol=1e-4, atol=1e-4)
    # Tail mass + top-k mass = 1.
    mass = snap.tensors["tail_mass"] + snap.tensors["top_logp"].exp().sum(-1)
    torch.testing.assert_close(mass, torch.ones_like(mass), rtol=0, atol=1e-5)


@pytest.mark.parametrize("candidate", ["scaled3", "noisy"])
def test_compare_from_snapshot_matches_compare_against_model(recorded, model, probes, candidate):
    path, _ = recorded
    cand = _scaled(model, 3.0) if candidate == "scaled3" else _noisy(model)
    direct = compare(model, cand, probes)
    stored = compare(load_snapshot(path), cand)
    # Exact stored quantities: identical numbers (up to float32 rounding of the log-normaliser, which
    # the fused GPU kernels compute in another order than log_softmax).
    assert stored.metrics["top1"].estimate == direct.metrics["top1"].estimate
    assert stored.metrics["ppl_ratio"].estimate == pytest.approx(direct.metrics["ppl_ratio"].estimate, rel=1e-6, abs=0)
    assert stored.metrics["top1"].estimate < 0.9  # the candidate really differs
    # KL: importance-sampled tail, within a few percent.
    kl_d, kl_s = direct.metrics["kl"].estimate, stored.metrics["kl"].estimate
    assert kl_d > 1e-4
    assert kl_s == pytest.approx(kl_d, rel=0.05)
    # Layer SQNR from sketches: within 0.5 dB where the layer changed; an untouched layer (exactly
    # equal, infinite SQNR) only shows the fp16 sketch noise floor, far above any threshold.
    assert [la.name for la in stored.layers] == [la.name for la in direct.layers]
    for d, s in zip(direct.layers, stored.layers):
        if d.sqnr_db == float("inf"):
            assert s.sqnr_db > 60, d.name
        else:
            assert abs(s.sqnr_db - d.sqnr_db) < 0.5, (d.name, d.sqnr_db, s.sqnr_db)
            assert s.cosine == pytest.approx(d.cosine, abs=0.01)
    assert stored.identity["baseline"] == f"snapshot {path}"
    assert stored.identity["probes_sha256"] == direct.identity["probes_sha256"]


def test_snapshot_rows_do_not_depend_on_batching(recorded, model):
    path, _ = recorded
    cand = _scaled(model, 3.0)
    snap = load_snapshot(path)
    a = compare(snap, cand, batch_size=8)
    b = compare(snap, cand, batch_size=3)
    assert b.metrics["top1"].estimate == pytest.approx(a.metrics["top1"].estimate, abs=1e-12)
    assert b.metrics["ppl_ratio"].estimate == pytest.approx(a.metrics["ppl_ratio"].estimate, rel=1e-6)
    assert b.metrics["kl"].estimate == pytest.approx(a.metrics["kl"].estimate, rel=1e-3)


def test_identical_candidate_passes_from_snapshot(recorded, model):
    path, _ = recorded
    report = compare(load_snapshot(path), copy.deepcopy(model))
    assert report.passed, report.to_text()
    assert report.metrics["top1"].estimate == 1.0
    assert report.metrics["ppl_ratio"].estimate == pytest.approx(1.0, abs=1e-9)
    assert abs(report.metrics["kl"].estimate) < 1e-5
    assert all(layer.sqnr_db > 60 for layer in report.layers)
    assert report.first_bad_layer is None


def test_harmful_candidate_fails_from_snapshot(recorded, model):
    path, _ = recorded
    report = compare(load_snapshot(path), _scaled(model, 20.0))
    assert not report.passed
    assert report.metrics["top1"].verdict == "fail"
    assert report.first_bad_layer is not None and report.first_bad_layer.name == "model.layers.1"


def test_probes_come_back_from_snapshot(recorded, probes):
    path, _ = recorded
    snap = load_snapshot(path)
    expected = as_probes(probes)
    assert snap.probes.token_ids == probes.tolist()
    assert snap.probes.tags == expected.tags
    assert snap.probes.fingerprint() == expected.fingerprint() == snap.meta["probes"]["sha256"]


def test_bytes_per_scored_token_is_file_body_over_scored_tokens(recorded):
    path, _ = recorded
    header, body = _split(path.read_bytes())
    tensor_bytes = max(entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__")
    assert tensor_bytes == len(body)
    scored = N_PROBES * (LENGTH - 1)
    snap = load_snapshot(path)
    assert snap.n_scored_tokens == scored
    assert snap.bytes_per_scored_token == pytest.approx(len(body) / scored)


def test_in_memory_snapshot_needs_no_file(model, probes, tmp_path):
    snap = record_snapshot(model, probes)
    assert snap.path is None
    assert _listing(tmp_path) == []
    assert compare(snap, copy.deepcopy(model)).passed


# ---------------------------------------------------------------------- atomic writes
def test_successful_write_leaves_no_temp_files(model, probes, tmp_path):
    folder = tmp_path / "snaps"
    record_snapshot(model, probes, folder / "a.safetensors")
    assert _listing(folder) == ["a.safetensors"]


@pytest.mark.parametrize("existing", [False, True])
def test_interrupt_during_recording_leaves_nothing_behind(model, probes, tmp_path, monkeypatch, existing):
    import pytest_hemorrhage.snapshot as snapshot_module

    path = tmp_path / "a.safetensors"
    if existing:
        record_snapshot(model, probes, path)
    before = path.read_bytes() if existing else None
    real = snapshot_module._record_batch
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(snapshot_module, "_record_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        record_snapshot(_noisy(model), probes, path, batch_size=4)
    assert len(calls) == 2
    if existing:
        assert _listing(tmp_path) == ["a.safetensors"]
        assert path.read_bytes() == before
    else:
        assert _listing(tmp_path) == []


def test_interrupt_during_file_write_keeps_old_file(model, probes, tmp_path, monkeypatch):
    path = tmp_path / "a.safetensors"
    record_snapshot(model, probes, path)
    before = path.read_bytes()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        record_snapshot(_noisy(model), probes, path)
    monkeypatch.undo()
    assert _listing(tmp_path) == ["a.safetensors"]
    assert path.read_bytes() == before
    load_snapshot(path)


# ---------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    msg = _load_error(tmp_path / "nope.safetensors")
    assert "no snapshot at" in msg and UPDATE in msg and "record_snapshot" in msg


@pytest.mark.parametrize("where", ["4 bytes", "mid-header", "mid-body", "one byte short"])
def test_truncated_file(tmp_path, snap_bytes, where):
    (n,) = struct.unpack("<Q", snap_bytes[:8])
    body = len(snap_bytes) - 8 - n
    cut = {"4 bytes": 4, "mid-header": 8 + n // 2, "mid-body": 8 + n + body // 2,
           "one byte short": len(snap_bytes) - 1}[where]
    msg = _load_error(_write(tmp_path, snap_bytes[:cut]))
    assert "truncated" in msg and UPDATE in msg


def test_empty_file(tmp_path):
    msg = _load_error(_write(tmp_path, b""))
    assert "truncated" in msg and UPDATE in msg


def test_unknown_format_version(tmp_path, recorded):
    path, snap = recorded
    meta = dict(snap.meta, version=99)
    data = st_save(dict(st_load(path.read_bytes())), metadata={"hemorrhage": json.dumps(meta)})
    msg = _load_error(_write(tmp_path, data))
    assert "format version 99" in msg and "reads version 1" in msg and UPDATE in msg


@pytest.mark.parametrize("metadata", [None, {"other": "x"}, {"hemorrhage": "not json"},
                                      {"hemorrhage": json.dumps({"format": "something-else", "version": 1})}])
def test_not_a_snapshot(tmp_path, metadata):
    data = st_save({"weight": torch.zeros(3, 4)}, metadata=metadata)
    msg = _load_error(_write(tmp_path, data))
    assert "not a pytest-hemorrhage snapshot" in msg and UPDATE in msg


def test_not_a_snapshot_with_odd_metadata_type(tmp_path, snap_bytes):
    header, body = _split(snap_bytes)
    header["__metadata__"] = ["a", "list"]
    msg = _load_error(_write(tmp_path, _join(header, body)))
    assert "not a pytest-hemorrhage snapshot" in msg and UPDATE in msg


def test_not_safetensors_at_all(tmp_path):
    msg = _load_error(_write(tmp_path, b"\x00" * 8 + b"hello world"))
    assert "unreadable header" in msg and UPDATE in msg
    msg = _load_error(_write(tmp_path, struct.pack("<Q", 4) + b"[1]!"))
    assert "unreadable header" in msg and UPDATE in msg


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_tampered_content(tmp_path, snap_bytes, where):
    (n,) = struct.unpack("<Q", snap_bytes[:8])
    body = len(snap_bytes) - 8 - n
    pos = 8 + n + {"first": 0, "middle": body // 2, "last": body - 1}[where]
    data = bytearray(snap_bytes)
    data[pos] ^= 0x01
    msg = _load_error(_write(tmp_path, bytes(data)))
    assert "content hash mismatch" in msg and UPDATE in msg


def test_header_length_field_absurd(tmp_path, snap_bytes):
    data = struct.pack("<Q", 2**60) + snap_bytes[8:]
    msg = _load_error(_write(tmp_path, data))
    assert str(2**60) in msg and "damaged or not a snapshot" in msg and UPDATE in msg


def test_header_length_larger_than_file(tmp_path, snap_bytes):
    data = struct.pack("<Q", 10**6) + snap_bytes[8:]
    msg = _load_error(_write(tmp_path, data))
    assert "truncated" in msg and UPDATE in msg


@pytest.mark.parametrize("shape", [[2**50], [2**39, 2**39, 2**39], [-1, 3]])
def test_tensor_entry_with_absurd_shape(tmp_path, snap_bytes, shape):
    header, body = _split(snap_bytes)
    header["top_logp"]["shape"] = shape
    msg = _load_error(_write(tmp_path, _join(header, body)))
    assert ("absurd shape" in msg or "damaged" in msg) and "'top_logp'" in msg and UPDATE in msg


@pytest.mark.parametrize("offsets", [[0, 2**62], [5, 1], ["a", "b"], [0], None])
def test_tensor_entry_with_bad_offsets(tmp_path, snap_bytes, offsets):
    header, body = _split(snap_bytes)
    header["lengths"]["data_offsets"] = offsets
    msg = _load_error(_write(tmp_path, _join(header, body)))
    assert "'lengths'" in msg and UPDATE in msg


@pytest.mark.parametrize("dtype", ["F64", "BOOL", None])
def test_tensor_entry_with_unsupported_dtype(tmp_path, snap_bytes, dtype):
    header, body = _split(snap_bytes)
    header["lengths"]["dtype"] = dtype
    msg = _load_error(_write(tmp_path, _join(header, body)))
    assert "unsupported entry" in msg and UPDATE in msg


@pytest.mark.parametrize("tensor, value", [("top_logp", float("nan")), ("sketches", float("nan")),
                                           ("norms", float("inf"))])
def test_nan_values_with_matching_content_hash(tmp_path, recorded, tensor, value):
    path, snap = recorded
    tensors = dict(st_load(path.read_bytes()))
    tensors[tensor] = tensors[tensor].clone()
    tensors[tensor].view(-1)[7] = value
    meta = dict(snap.meta, content_sha256=_content_sha256(tensors))
    data = st_save(tensors, metadata={"hemorrhage": json.dumps(meta)})
    msg = _load_error(_write(tmp_path, data))
    # The hash matched, so only the finiteness check can have caught it.
    assert "content hash" not in msg
    assert f"'{tensor}'" in msg and "NaN or Inf" in msg and UPDATE in msg


def test_missing_tensor_with_matching_content_hash(tmp_path, recorded):
    path, snap = recorded
    tensors = dict(st_load(path.read_bytes()))
    del tensors["tail_mass"]
    meta = dict(snap.meta, content_sha256=_content_sha256(tensors))
    msg = _load_error(_write(tmp_path, st_save(tensors, metadata={"hemorrhage": json.dumps(meta)})))
    assert "tail_mass" in msg and UPDATE in msg


def test_loading_never_unpickles(recorded, monkeypatch):
    path, snap = recorded

    def forbidden(*args, **kwargs):
        raise AssertionError("load_snapshot must not unpickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    loaded = load_snapshot(path)
    assert torch.equal(loaded.tensors["top_ids"], snap.tensors["top_ids"])


# ---------------------------------------------------------------------- paths
def test_path_outside_root_is_refused(tmp_path, recorded):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "x.safetensors"
    outside.write_bytes(recorded[0].read_bytes())
    for path in ("../x.safetensors", outside, root / ".." / "x.safetensors"):
        msg = _load_error(path, root=root)
        assert "escapes the snapshot folder" in msg and "plain names" in msg
    # A symlink inside the folder that points outside it escapes too.
    link = root / "link.safetensors"
    link.symlink_to(outside)
    msg = _load_error(link, root=root)
    assert "escapes the snapshot folder" in msg
    # Inside the folder: fine, relative or absolute.
    (root / "ok.safetensors").write_bytes(outside.read_bytes())
    assert load_snapshot("ok.safetensors", root=root).path == (root / "ok.safetensors").resolve()
    assert load_snapshot(root / "ok.safetensors", root=root).n_scored_tokens == N_PROBES * (LENGTH - 1)


@pytest.mark.parametrize("name", ["../../etc/x", "/etc/passwd", "..", "../..", "", "a/../../b", "~/x",
                                  "tests/test_x.py::test_a[param/../b]", "c:\\windows\\x", "x\x00y"])
def test_snapshot_path_stays_inside_root(tmp_path, name):
    root = tmp_path / "snaps"
    path = snapshot_path(root, name)
    assert path.parent == root.resolve()
    assert path.name.endswith(".safetensors")
    # One plain file name: no separators, and never a hidden file or "." / "..".
    assert "/" not in path.name and "\\" not in path.name and "\x00" not in path.name
    assert not path.name.startswith(".")


def test_snapshot_path_sanitises_test_ids(tmp_path):
    root = tmp_path / "snaps"
    path = snapshot_path(root, "tests/test_x.py::test_a[param/../b]")
    assert path.parent == root.resolve()
    digest = hashlib.sha256(b"tests/test_x.py::test_a[param/../b]").hexdigest()[:12]
    assert path.name == f"tests_test_x.py_test_a_param_.._b-{digest}.safetensors"
    # Deterministic, and different parameters give different files.
    assert snapshot_path(root, "tests/test_x.py::test_a[param/../b]") == path
    assert snapshot_path(root, "tests/test_x.py::test_a[1]") != snapshot_path(root, "tests/test_x.py::test_a[2]")
    # Plain node ids keep readable names; ids that clean to the same text stay apart.
    assert snapshot_path(root, "tests/test_x.py::test_a").name == "tests_test_x.py_test_a.safetensors"
    assert snapshot_path(root, "t[a b]") != snapshot_path(root, "t[a?b]")


def test_snapshot_path_keeps_long_ids_apart(tmp_path):
    prefix = "tests/test_x.py::test_a[" + "p" * 300
    a, b = snapshot_path(tmp_path, prefix + "1]"), snapshot_path(tmp_path, prefix + "2]")
    assert a != b
    assert len(a.name) <= 255 and len(b.name) <= 255
    assert a.parent == b.parent == tmp_path.resolve()


# ---------------------------------------------------------------------- identity
def test_other_probes_are_refused(recorded, model):
    path, _ = recorded
    snap = load_snapshot(path)
    other = random_token_ids(N_PROBES, LENGTH, seed=1)
    with pytest.raises(SnapshotError) as info:
        compare(snap, copy.deepcopy(model), other)
    msg = str(info.value)
    assert "probe hash" in msg and UPDATE in msg
    # Same token ids, other tags: still other probes.
    tagged = Probes.from_token_ids(snap.probes.token_ids, tags=["a", "b"] * (N_PROBES // 2))
    with pytest.raises(SnapshotError, match="probe hash"):
        compare(snap, copy.deepcopy(model), tagged)
    # The recorded probes, passed again, are accepted.
    assert compare(snap, copy.deepcopy(model), random_token_ids(N_PROBES, LENGTH)).passed


def test_same_model_passes_identity_check(recorded, model):
    path, _ = recorded
    snap = load_snapshot(path)
    snap.check_identity(baseline=copy.deepcopy(model))
    assert model_identity(copy.deepcopy(model)) == snap.meta["model"]


def test_other_model_parameters(recorded):
    path, _ = recorded
    snap = load_snapshot(path)
    with pytest.raises(SnapshotError) as info:
        snap.check_identity(baseline=tiny_llama(seed=1))
    msg = str(info.value)
    assert "model parameters hash differs" in msg and "model config" not in msg and UPDATE in msg
    assert str(path) in msg


def test_one_changed_weight_is_noticed(recorded, model):
    snap = load_snapshot(recorded[0])
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.model.layers[2].self_attn.q_proj.weight[0, 0] += 1e-3
    with pytest.raises(SnapshotError, match="model parameters hash"):
        snap.check_identity(baseline=other)


def test_other_model_config(recorded, model):
    snap = load_snapshot(recorded[0])
    other = copy.deepcopy(model)
    other.config.rms_norm_eps = 1e-3
    with pytest.raises(SnapshotError) as info:
        snap.check_identity(baseline=other)
    msg = str(info.value)
    assert "model config hash differs" in msg and "model parameters" not in msg and UPDATE in msg


def _word_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_tokenizer_mismatch(model, probes, tmp_path):
    tok_a = _word_tokenizer(["alpha", "beta", "gamma"])
    tok_a_again = _word_tokenizer(["alpha", "beta", "gamma"])
    tok_b = _word_tokenizer(["alpha", "beta", "delta"])
    assert tokenizer_sha256(tok_a) == tokenizer_sha256(tok_a_again) != tokenizer_sha256(tok_b)
    path = tmp_path / "tok.safetensors"
    record_snapshot(model, probes, path, tokenizer=tok_a)
    snap = load_snapshot(path)
    assert snap.meta["tokenizer_sha256"] == tokenizer_sha256(tok_a)
    snap.check_identity(baseline=model, tokenizer=tok_a_again)
    with pytest.raises(SnapshotError) as info:
        snap.check_identity(baseline=model, tokenizer=tok_b)
    msg = str(info.value)
    assert "tokenizer hash differs" in msg and "model" not in msg.split("does not match")[1] and UPDATE in msg


def test_every_mismatch_is_named_at_once(recorded):
    snap = load_snapshot(recorded[0])
    with pytest.raises(SnapshotError) as info:
        snap.check_identity(baseline=tiny_llama(seed=1), probes=as_probes(random_token_ids(4, 8, seed=3)))
    msg = str(info.value)
    assert "model parameters hash" in msg and "probe hash" in msg


def test_candidate_with_other_vocabulary(recorded):
    snap = load_snapshot(recorded[0])
    with pytest.raises(SnapshotError) as info:
        compare(snap, tiny_llama(vocab=256))
    msg = str(info.value)
    assert "vocabulary mismatch" in msg and "128" in msg and "256" in msg and UPDATE in msg


# ---------------------------------------------------------------------- options a snapshot fixes
def test_the_first_probes_of_a_recording_are_compared_on_their_recorded_rows(recorded, model, probes):
    snap = load_snapshot(recorded[0])
    candidate = _noisy(model, scale=0.05)
    first = Probes.from_token_ids(probes[:6].tolist())
    against_snapshot = compare(snap, candidate, first)
    live = compare(model, candidate, first)
    assert against_snapshot.identity["n_probes"] == 6
    # Top-1 agreement and the target's log-probability are stored exactly: the same figures as live.
    assert against_snapshot.metrics["top1"].estimate == live.metrics["top1"].estimate
    assert against_snapshot.metrics["ppl_ratio"].estimate == pytest.approx(live.metrics["ppl_ratio"].estimate,
                                                                            rel=1e-5)
    assert against_snapshot.metrics["ppl_ratio"].estimate != compare(snap, candidate).metrics["ppl_ratio"].estimate
    later = Probes.from_token_ids(probes[6:12].tolist())  # not the first ones: their rows would be misread
    with pytest.raises(SnapshotError, match="probe hash differs"):
        compare(snap, candidate, later)


def test_options_a_snapshot_cannot_honour_are_refused(recorded, model):
    snap = load_snapshot(recorded[0])
    with pytest.raises(InvalidArgument, match=r"attention=True: the baseline \(snapshot .*\) gives no attention"):
        compare(snap, _noisy(model), attention=True)
    recorded_k = snap.meta["topk"]
    with pytest.raises(InvalidArgument, match=rf"topk: {recorded_k + 1} asked for, but the baseline \(snapshot .*\) "
                                              rf"holds the top {recorded_k} tokens only; pass topk={recorded_k}"):
        compare(snap, _noisy(model), topk=recorded_k + 1)
    assert compare(snap, _noisy(model), topk=recorded_k).metrics["topk"].extra["k"] == recorded_k
