"""Localisation of a GGUF candidate's cost block by block, without hooks, on a tiny Llama (fast tier).

The planted file holds every 2-D tensor at Q8_0 except one block's, badly quantised at Q4_0:
the localisation must name that block. The whole-file row (every dequantised tensor swapped into
PyTorch) must agree with llama.cpp running the file itself: two runtimes, one set of weights.
"""

from __future__ import annotations

import json

import gguf
import torch
import pytest
from tiny_gguf import requantise_gguf, write_tiny_gguf
from tiny_models import tiny_llama

import pytest_hemorrhage as ph
from pytest_hemorrhage.gguf_files import gguf_tensor_types, replace_tensors_gguf

pytestmark = pytest.mark.usefixtures("one_thread")
Q = gguf.GGMLQuantizationType
#: Q8_0 blocks cost about 4e-7 nats/token here, the Q4_0 block about 7e-5.
GATE = {"max_kl": 2e-5, "min_top1_agreement": 0.8}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("localise")


@pytest.fixture(scope="module")
def f32(gguf_baseline, folder):
    path = folder / "tiny.F32.gguf"
    write_tiny_gguf(gguf_baseline, path)
    return path


def planted(f32, folder, block):
    path = folder / f"planted-{block}.gguf"
    if not path.exists():
        requantise_gguf(f32, path, lambda name: Q.Q4_0 if name.startswith(f"blk.{block}.") else Q.Q8_0)
    return path


@pytest.mark.parametrize("block", [0, 2, 3])
def test_the_badly_quantised_block_is_named(gguf_baseline, gguf_probes, f32, folder, block):
    found = ph.localise(gguf_baseline, planted(f32, folder, block), gguf_probes, **GATE)
    assert found.blamed == f"model.layers.{block}"
    first, second = found.ranking[:2]
    assert first.kl > 10 * second.kl
    assert first.types == ["F32", "Q4_0"] and first.gguf_tensors[0].startswith(f"blk.{block}.")
    assert first.report.verdict == "fail" and second.report.verdict == "pass"
    assert found.tensor_type_options() == ["--tensor-type", f"blk\\.{block}\\.=q8_0"]
    assert f"--tensor-type 'blk\\.{block}\\.=q8_0'" in found.to_text()


def test_the_whole_file_in_pytorch_agrees_with_llama_cpp_running_it(gguf_baseline, gguf_probes, f32, folder):
    path = planted(f32, folder, 2)
    found = ph.localise(gguf_baseline, path, gguf_probes, **GATE)
    in_llama_cpp = ph.compare(gguf_baseline, ph.llama_cpp(path, n_threads=1), gguf_probes, layers=None).metrics["kl"]
    assert found.whole_file.metrics["kl"].estimate == pytest.approx(in_llama_cpp.estimate, rel=0.05)
    groups = [cost.group for cost in found.costs]
    assert groups == ["model.embed_tokens", *(f"model.layers.{i}" for i in range(4)), "model.norm", "lm_head"]


def test_groups_the_file_leaves_at_full_precision_are_unchanged_and_not_run(gguf_baseline, gguf_probes, f32):
    found = ph.localise(gguf_baseline, f32, gguf_probes, **GATE)
    assert all(cost.report is None for cost in found.costs)
    assert found.blamed is None and found.ranking == []
    assert found.whole_file.metrics["kl"].estimate == 0.0
    assert "unchanged" in found.to_text()


def test_keeping_the_blamed_block_at_higher_precision_passes_the_gate_in_llama_cpp(gguf_baseline, gguf_probes, f32,
                                                                                   folder):
    candidate = planted(f32, folder, 2)
    found = ph.localise(gguf_baseline, candidate, gguf_probes, **GATE)
    assert not ph.compare(gguf_baseline, ph.llama_cpp(candidate, n_threads=1), gguf_probes, layers=None, **GATE).passed
    fixed = found.verify(f32, steps=(1, 2), folder=folder / "kept", n_threads=1)
    assert fixed is not None and fixed.passed and fixed.kept == ["model.layers.2"]
    assert found.verifications == [fixed]
    types = gguf_tensor_types(fixed.path)
    assert {types[n] for n in types if n.startswith("blk.2.")} == {"F32"}
    assert types == {n: ("F32" if n.startswith("blk.2.") else t) for n, t in gguf_tensor_types(candidate).items()}
    assert fixed.size_bytes == fixed.path.stat().st_size > candidate.stat().st_size
    assert "kept at higher precision: model.layers.2 -> pass" in found.to_text()
    data = json.loads(json.dumps(found.to_dict()))
    assert data["blamed"] == "model.layers.2" and data["verifications"][0]["kept"] == ["model.layers.2"]


def test_verification_stops_at_the_first_file_that_passes_and_keeps_each_attempt(gguf_baseline, gguf_probes, f32,
                                                                                 folder):
    candidate = folder / "all-q4.gguf"
    requantise_gguf(f32, candidate, lambda name: Q.Q4_0)
    found = ph.localise(gguf_baseline, candidate, gguf_probes, **GATE)
    fixed = found.verify(f32, steps=(1, 2, 4, 16), folder=folder / "all", n_threads=1)
    counts = [len(attempt.kept) for attempt in found.verifications]
    assert counts == sorted(counts) and counts[0] == 1
    assert all(not attempt.passed for attempt in found.verifications[:-1])
    assert [attempt.kept for attempt in found.verifications][-1] == [c.group for c in found.ranking[:counts[-1]]]
    if fixed is None:  # every group kept (16 is more than there are) and still failing cannot happen at F32
        pytest.fail(f"keeping every group at F32 must pass: {found.to_text()}")
    assert fixed.passed


def test_a_file_of_another_model_is_refused_naming_the_tensor(gguf_probes, f32):
    extra = r"holds tensor 'blk\.3\.attn_k\.weight' \(and 8 more\).*converted from"
    with pytest.raises(ph.InvalidArgument, match=extra):
        ph.localise(tiny_llama(seed=5, layers=3), f32, gguf_probes)
    missing = r"has no tensor for the baseline's 'model\.layers\.4\.self_attn\.q_proj\.weight' \(and 8 more\)"
    with pytest.raises(ph.InvalidArgument, match=missing):
        ph.localise(tiny_llama(seed=5, layers=5), f32, gguf_probes)


def test_a_snapshot_baseline_and_a_missing_file_are_refused(gguf_baseline, gguf_probes, f32, tmp_path):
    snapshot = ph.record_snapshot(gguf_baseline, gguf_probes)
    with pytest.raises(ph.InvalidArgument, match="needs the live model"):
        ph.localise(snapshot, f32, gguf_probes)
    with pytest.raises(ph.InvalidArgument, match="not a file"):
        ph.localise(gguf_baseline, tmp_path / "missing.gguf", gguf_probes)


def test_replacing_tensors_checks_names_and_shapes(f32, folder, tmp_path):
    other = folder / "wide.gguf"
    write_tiny_gguf(tiny_llama(seed=1, layers=4, vocab=200), other)
    with pytest.raises(ph.InvalidArgument, match="has no tensor 'blk.9.attn_q.weight'"):
        replace_tensors_gguf(f32, f32, tmp_path / "x.gguf", ["blk.9.attn_q.weight"])
    with pytest.raises(ph.InvalidArgument, match="token_embd.weight.*has shape"):
        replace_tensors_gguf(f32, other, tmp_path / "x.gguf", ["token_embd.weight"])
    assert not (tmp_path / "x.gguf").exists()


def test_progress_prints_one_line_per_group_and_the_whole_file(gguf_baseline, gguf_probes, f32, folder, capsys):
    found = ph.localise(gguf_baseline, planted(f32, folder, 1), gguf_probes, progress=True, **GATE)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        *(f"localise [{i}/{len(found.costs)}] {cost.group}" for i, cost in enumerate(found.costs, 1)),
        "localise",
    ]
    assert "localise [6/7] model.norm: unchanged" in lines and lines[-1].startswith("localise: whole file: mean KL")


def test_the_baseline_runs_once_and_each_cost_equals_a_plain_comparison(gguf_baseline, gguf_probes, f32, folder,
                                                                       monkeypatch):
    import copy
    import importlib

    from pytest_hemorrhage.gguf_model import dequantised_tensors
    from pytest_hemorrhage.sources.module import ModuleSource

    path = planted(f32, folder, 2)
    runs = []
    observe = ModuleSource.observe
    monkeypatch.setattr(ModuleSource, "observe",
                        lambda self, *a, **k: (runs.append(self.model is gguf_baseline), observe(self, *a, **k))[1])
    found = ph.localise(gguf_baseline, path, gguf_probes, **GATE)
    batches = -(-len(gguf_probes) // 8)
    assert runs.count(True) == batches  # once, although 7 comparisons ran
    # The package's name `localise` is the function; the module is reached through importlib.
    monkeypatch.setattr(importlib.import_module("pytest_hemorrhage.localise"), "REPLAY_BUDGET_BYTES", 0)
    runs.clear()
    unreplayed = ph.localise(gguf_baseline, path, gguf_probes, **GATE)
    assert runs.count(True) == batches * 7
    by_hand = copy.deepcopy(gguf_baseline)
    tensors = dequantised_tensors(gguf_baseline, path)
    with torch.no_grad():
        for name, tensor in tensors.items():
            if name.startswith("model.layers.2."):
                by_hand.get_parameter(name).copy_(tensor)
    plain = ph.compare(gguf_baseline, by_hand, gguf_probes, layers=None).metrics["kl"].estimate
    for result in (found, unreplayed):
        assert result.ranking[0].report.metrics["kl"].estimate == pytest.approx(plain, rel=1e-9)


def test_bisection_finds_the_fewest_groups_that_pass(gguf_baseline, gguf_probes, f32, folder):
    candidate = folder / "all-q4.gguf"
    if not candidate.exists():
        requantise_gguf(f32, candidate, lambda name: Q.Q4_0)
    found = ph.localise(gguf_baseline, candidate, gguf_probes, **GATE)
    ladder = found.verify(f32, steps=(len(found.ranking),), folder=folder / "ladder", n_threads=1)
    assert ladder is not None and len(found.verifications) == 1
    fewest = found.verify(f32, steps=(len(found.ranking),), bisect=True, folder=folder / "bisect", n_threads=1)
    assert fewest is not None and fewest.passed
    count = len(fewest.kept)
    tried = {len(v.kept): v.passed for v in found.verifications[1:]}
    assert tried[count] and (count == 1 or tried.get(count - 1) is False), tried
    assert len(tried) <= 1 + (len(found.ranking) - 1).bit_length()


def test_verify_refuses_bad_steps_and_a_file_with_nothing_to_keep(gguf_baseline, gguf_probes, f32, folder):
    found = ph.localise(gguf_baseline, planted(f32, folder, 1), gguf_probes, **GATE)
    with pytest.raises(ph.InvalidArgument, match="steps: counts of groups to keep"):
        found.verify(f32, steps=(0,))
    with pytest.raises(ph.InvalidArgument, match="nothing to keep"):
        ph.localise(gguf_baseline, f32, gguf_probes, **GATE).verify(f32)
