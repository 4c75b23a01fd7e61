"""Gate error rates: every harmless change of the catalogue passes, every harmful one fails.

The catalogue is :mod:`pytest_hemorrhage.gate_cases`; ``benchmarks/gate_rates.py`` runs it on the
default model at the README size (32 probes x 128 tokens). Here, on every run, each case that fits
a 4-block tiny Llama goes through ``compare`` with default thresholds, and the builders are checked
on that model: harmless refactors really change the model (weights or structure) while keeping its
outputs, and no builder touches the model it is given. The slow tier runs the whole catalogue on
the default model, on a few short probes with default thresholds.
"""

import hashlib

import pytest
import torch

from pytest_hemorrhage import gate_cases as gc
from pytest_hemorrhage.engine import compare
from pytest_hemorrhage.gate_cases import CASES, harmful_cases, harmless_cases
from pytest_hemorrhage.modify import DecodedModel
from pytest_hemorrhage.probes import Probes
from tiny_models import random_token_ids, tiny_llama

N_PROBES, MAX_LENGTH = 9, 32  # one probe of each built-in domain


def _fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    h.update(str(getattr(model.config, "_attn_implementation", None)).encode())
    hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())
    h.update(str(hooks).encode())
    return h.hexdigest()


def _assert_verdict(case, report) -> None:
    if case.kind == "harmless":
        # Passed outright: an inconclusive verdict would fail the gate just the same.
        assert report.passed and set(report.verdicts.values()) == {"pass"}, report.to_text()
    else:
        assert not report.passed, report.to_text()


def test_catalogue_size_and_names():
    assert len(harmless_cases()) >= 50 and len(harmful_cases()) >= 20
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)


@pytest.fixture(scope="module")
def default_model_left_untouched(hemorrhage_default_model):
    """The shared default model; once this module's cases are done, a check that none of them changed it.

    A teardown check rather than a last test: it needs no test order, and every xdist worker that
    ran cases checks its own copy.
    """
    before = _fingerprint(hemorrhage_default_model[0])
    yield hemorrhage_default_model
    assert _fingerprint(hemorrhage_default_model[0]) == before, "a catalogue case modified the shared default model"


@pytest.fixture(scope="module")
def gate_probes(default_model_left_untouched):
    return Probes.builtin(default_model_left_untouched[1], n=N_PROBES, max_length=MAX_LENGTH)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gate_verdict(case, default_model_left_untouched, gate_probes):
    model, tokenizer = default_model_left_untouched
    baseline, candidate, probes, kwargs = case.build(model, tokenizer, gate_probes)
    _assert_verdict(case, compare(baseline, candidate, probes, **kwargs))


def test_the_fingerprint_sees_weights_hooks_and_attention_implementation():
    """The teardown check above can fail: its fingerprint changes with a weight, a hook or the attention kernel."""
    model = tiny_llama()
    before = _fingerprint(model)
    handle = model.model.layers[0].register_forward_hook(lambda *args: None)
    assert _fingerprint(model) != before
    handle.remove()
    assert _fingerprint(model) == before
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] += 1e-3
    assert _fingerprint(model) != before
    other = tiny_llama()
    assert _fingerprint(other) == before
    other.config._attn_implementation = "sdpa" if other.config._attn_implementation == "eager" else "eager"
    assert _fingerprint(other) != before


# --------------------------------------------------------------------------- verdicts and builders on a tiny Llama

TINY_PROBES = Probes.from_token_ids(random_token_ids(n=16, length=24).tolist())

# Builders that need the default model's cache (the slow tier runs them, with the whole catalogue).
NEEDS_DEFAULT = {"reload-from-cache", "reload-from-cache-as-baseline"}
# Harmless cases whose two models hold bit-identical weights in the same structure.
IDENTICAL = ("deep-copy", "batch-size-", "shuffled-probes-", "same-sampling", "fp32-fp64-fp32",
             "safetensors-state-dict", "save-from-pretrained", "tiny-noise", "eager-attention-both")


def _unwrap(model):
    return model.model if isinstance(model, DecodedModel) else model


def _logits(model, ids):
    model = _unwrap(model)
    with torch.inference_mode():
        return model(ids, use_cache=False).logits


def _state(model):
    return {k: v.clone() for k, v in _unwrap(model).state_dict().items()}


def _tiny_cases(kind, layers=4):
    """Catalogue cases whose builders run on a ``layers``-block tiny Llama."""
    out = []
    for c in CASES:
        block = c.name.rsplit("-", 1)[-1]
        if c.kind == kind and c.name not in NEEDS_DEFAULT and not (block.isdigit() and int(block) >= layers):
            out.append(c)
    return out


def _differs(a, b) -> bool:
    sa, sb = _state(a), _state(b)
    if sa.keys() != sb.keys() or any(not torch.equal(sa[k], sb[k]) for k in sa):
        return True
    return _unwrap(a).config._attn_implementation != _unwrap(b).config._attn_implementation


@pytest.fixture(scope="module")
def tiny():
    """A tiny Llama whose RMSNorm weights are not all ones (else norm folding would be a no-op).

    Initialised with std 0.1 rather than 0.02: its next-token distributions are peaked enough that a
    change of sampling temperature is a real harm (KL ~0.08 for T=2 against T=1, 0.02 allowed),
    where near-uniform outputs would keep it at ~0.003.
    """
    model = tiny_llama(layers=4, init_std=0.1)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__.endswith("RMSNorm"):
                module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape, generator=gen))
    return model


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", _tiny_cases("harmless") + _tiny_cases("harmful"), ids=lambda c: c.name)
def test_gate_verdict_on_a_tiny_model(case, tiny):
    baseline, candidate, probes, kwargs = case.build(tiny, None, TINY_PROBES)
    _assert_verdict(case, compare(baseline, candidate, probes, **kwargs))


def _build_leaving_input(case, tiny):
    """Build ``case`` on ``tiny`` and check the builder left ``tiny`` as it was."""
    before = _state(tiny)
    baseline, candidate, probes, _ = case.build(tiny, None, TINY_PROBES)
    for k, v in before.items():
        assert torch.equal(tiny.state_dict()[k], v), f"{case.name} modified the model it was given ({k})"
    assert tiny.config._attn_implementation == "sdpa"
    return baseline, candidate, torch.tensor(probes.token_ids)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", _tiny_cases("harmless"), ids=lambda c: c.name)
def test_harmless_builder_keeps_outputs_and_leaves_its_input(case, tiny):
    baseline, candidate, ids = _build_leaving_input(case, tiny)
    torch.testing.assert_close(_logits(candidate, ids), _logits(baseline, ids), atol=1e-4, rtol=1e-4)
    # Exact copies really are exact; refactors really change weights, structure or kernel.
    assert _differs(baseline, candidate) != case.name.startswith(IDENTICAL), case.name


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", _tiny_cases("harmful"), ids=lambda c: c.name)
def test_harmful_builder_changes_outputs_and_leaves_its_input(case, tiny):
    baseline, candidate, ids = _build_leaving_input(case, tiny)
    if isinstance(candidate, DecodedModel):  # same logits; the sampling distribution differs
        assert candidate.config.temperature != baseline.config.temperature
    else:
        assert not torch.allclose(_logits(candidate, ids), _logits(baseline, ids), atol=1e-3)


@pytest.mark.usefixtures("one_thread")
def test_fused_projection_serves_each_slice_from_one_gemm(tiny):
    attn = gc.fused_qkv(tiny).model.layers[0].self_attn
    ref = tiny.model.layers[0].self_attn
    fused = attn.q_proj.fused
    x = torch.randn(2, 5, tiny.config.hidden_size)
    expected = torch.nn.functional.linear(x, fused.weight).split(fused.sizes, -1)
    parts = [attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)]
    for got, want, original in zip(parts, expected, (ref.q_proj, ref.k_proj, ref.v_proj)):
        assert torch.equal(got, want)
        torch.testing.assert_close(got, original(x))
    assert fused._input is None  # every slice served: no stale input kept
    assert not torch.equal(attn.k_proj(x + 1.0), parts[1])  # a new input is recomputed


@pytest.mark.usefixtures("one_thread")
def test_swapped_tokenizer_reads_ids_through_the_permutation(tiny):
    cand = gc.swapped_tokenizer(tiny, 0)
    perm = torch.randperm(tiny.config.vocab_size, generator=torch.Generator().manual_seed(0))
    ids = random_token_ids(n=2, length=8)
    torch.testing.assert_close(_logits(cand, ids), _logits(tiny, perm[ids]))
