"""Pruning: magnitude, N:M, heads, channels, blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.modify import PruningConfig, find_decoder_blocks, prune
from pytest_hemorrhage.modify._common import linear_modules, weight_out_in
from tiny_models import random_token_ids, tiny_gpt2, tiny_llama, tiny_qwen2


pytestmark = pytest.mark.usefixtures("one_thread")


MODELS = ["llama", "gpt2", "qwen2"]


def _runs(model: nn.Module, cache: bool = True) -> torch.Tensor:
    x = random_token_ids(2, 12)
    with torch.no_grad():
        logits = model(x, use_cache=cache).logits
        assert logits.shape == (2, 12, 128)
        assert torch.isfinite(logits).all()
        if cache:  # incremental decoding with a KV cache also works
            model.generate(x[:, :4], max_new_tokens=3, do_sample=False, min_new_tokens=3, pad_token_id=0)
    return logits


# ---------------------------------------------------------------- unstructured


@pytest.mark.parametrize("model_name", MODELS)
def test_magnitude_exact_fraction_of_zeros(model_name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_name)
    out = prune(model, sparsity=0.5)
    pruned = 0
    for name, module in linear_modules(out):
        w = module.weight.detach()
        original = model.get_submodule(name).weight.detach()
        if "lm_head" in name:
            assert torch.equal(w, original)
            continue
        pruned += 1
        assert (w == 0).sum().item() == w.numel() // 2, name
        # The zeros are exactly the smallest magnitudes; the survivors are untouched.
        kept = w != 0
        assert torch.equal(w[kept], original[kept])
        assert original[~kept].abs().max() <= original[kept].abs().min()
    assert pruned > 0


def test_magnitude_ties_broken_by_index() -> None:
    layer = nn.Sequential(nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        layer[0].weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 2.0], [1.0, 3.0, -1.0, 4.0]]))
    out = prune(layer, sparsity=0.5)
    # Five weights tie at |1| (flat indices 0, 1, 2, 4, 6); the four lowest indices go.
    assert out[0].weight.tolist() == [[0.0, 0.0, 0.0, 2.0], [0.0, 3.0, -1.0, 4.0]]


@pytest.mark.parametrize("sparsity", [0.1, 0.3, 0.77])
def test_magnitude_other_fractions(llama: nn.Module, sparsity: float) -> None:
    out = prune(llama, sparsity=sparsity)
    w = out.model.layers[1].mlp.down_proj.weight
    assert (w == 0).sum().item() == round(sparsity * w.numel())


def test_per_layer_sparsity_honoured(llama: nn.Module) -> None:
    out = prune(llama, sparsity=0.5, per_layer={"layers.0.": 0.9, "*.mlp.up_proj": 0.25})
    for name, module in linear_modules(out):
        if "lm_head" in name:
            continue
        w = module.weight
        expected = 0.9 if name.startswith("model.layers.0.") else 0.25 if name.endswith("mlp.up_proj") else 0.5
        assert (w == 0).sum().item() == round(expected * w.numel()), name


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
@pytest.mark.parametrize("model_name", ["llama", "gpt2"])
def test_nm_pattern_group_by_group(model_name: str, n: int, m: int, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_name)
    out = prune(model, method="nm", n=n, m=m)
    checked = 0
    for name, module in linear_modules(out):
        if "lm_head" in name:
            continue
        w = weight_out_in(module).detach()
        original = weight_out_in(model.get_submodule(name)).detach()
        groups = w.reshape(w.shape[0], -1, m)
        orig_groups = original.reshape(groups.shape)
        kept = groups != 0
        assert (kept.sum(-1) == n).all(), name
        assert torch.equal(groups[kept], orig_groups[kept])
        # Every kept magnitude is >= every pruned magnitude of the same group.
        mag = orig_groups.abs()
        kept_min = torch.where(kept, mag, torch.full_like(mag, float("inf"))).amin(-1)
        pruned_max = torch.where(kept, torch.full_like(mag, -1.0), mag).amax(-1)
        assert (kept_min >= pruned_max).all(), name
        # Spot-check some groups against a plain sort (ties: lower index kept).
        for orig, keep in zip(orig_groups[:4].reshape(-1, m), kept[:4].reshape(-1, m)):
            largest = sorted(range(m), key=lambda i: (-abs(orig[i].item()), i))[:n]
            assert sorted(largest) == torch.nonzero(keep).flatten().tolist()
        checked += groups.shape[0] * groups.shape[1]
    assert checked > 1000


def test_nm_partial_trailing_group_stays_dense(llama: nn.Module) -> None:
    out = prune(llama, method="nm", n=1, m=3, targets=("layers.0.mlp.down_proj",))
    w = out.model.layers[0].mlp.down_proj.weight  # in_features 128 = 42 * 3 + 2
    original = llama.model.layers[0].mlp.down_proj.weight
    assert ((w[:, :126].reshape(64, 42, 3) != 0).sum(-1) == 1).all()
    assert torch.equal(w[:, 126:], original[:, 126:])


def test_nm_ties_keep_lower_index() -> None:
    layer = nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0, 1.0, 0.5, 2.0, 2.0, -2.0, 2.0]]))
    out = prune(nn.Sequential(layer), method="nm", n=2, m=4)
    assert out[0].weight.tolist() == [[1.0, -1.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0]]


# ---------------------------------------------------------------- structured


@pytest.mark.parametrize("model_name", MODELS)
def test_heads_zeroed_and_model_runs(model_name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_name)
    out = prune(model, sparsity=0.5, method="heads")
    for name, p in model.named_parameters():
        assert out.get_parameter(name).shape == p.shape
    blocks = find_decoder_blocks(out)[1]
    for block in blocks:
        if model_name == "gpt2":
            o, heads, d = block.attn.c_proj, 4, 16
        else:
            o, heads, d = block.self_attn.o_proj, 4, 16
        o_w = weight_out_in(o)
        dead = [h for h in range(heads) if (o_w[:, h * d : (h + 1) * d] == 0).all()]
        assert len(dead) == 2
        if model_name != "gpt2":
            q_w = weight_out_in(block.self_attn.q_proj)
            assert all((q_w[h * d : (h + 1) * d] == 0).all() for h in dead)
    base = _runs(model)
    assert not torch.allclose(base, _runs(out))


def test_heads_whole_kv_group_removed(llama: nn.Module) -> None:
    # 4 query heads share 2 kv heads; pruning 3 heads empties at least one kv group.
    out = prune(llama, sparsity=0.75, method="heads")
    for block in out.model.layers:
        k = block.self_attn.k_proj.weight
        empty = [g for g in range(2) if (k[g * 16 : (g + 1) * 16] == 0).all()]
        assert len(empty) == 1
    _runs(out)


def test_heads_per_layer(llama: nn.Module) -> None:
    out = prune(llama, sparsity=0.25, method="heads", per_layer={"layers.2.self_attn": 0.0})
    for i, block in enumerate(out.model.layers):
        o_w = block.self_attn.o_proj.weight
        dead = sum(bool((o_w[:, h * 16 : (h + 1) * 16] == 0).all()) for h in range(4))
        assert dead == (0 if i == 2 else 1)


def _source_index(original_rows: torch.Tensor, new_rows: torch.Tensor) -> list[int]:
    """For each row of ``new_rows``, the index of the identical row in ``original_rows``."""
    same = (original_rows[:, None, :] == new_rows[None, :, :]).all(-1)  # [orig, new]
    assert (same.sum(0) == 1).all()
    return same.float().argmax(0).tolist()


@pytest.mark.parametrize("model_name", MODELS)
def test_channels_truly_shrink_and_model_runs(model_name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_name)
    out = prune(model, sparsity=0.5, method="channels")
    for block, orig in zip(find_decoder_blocks(out)[1], find_decoder_blocks(model)[1]):
        if model_name == "gpt2":
            fc, proj = block.mlp.c_fc, block.mlp.c_proj
            assert fc.weight.shape == (64, 128) and fc.bias.shape == (128,) and fc.nf == 128
            assert proj.weight.shape == (128, 64) and proj.nx == 128
            # Surviving channels are original columns, in order.
            cols = _source_index(orig.mlp.c_fc.weight.t(), fc.weight.t())
            assert cols == sorted(cols)
            assert torch.equal(proj.weight, orig.mlp.c_proj.weight[cols])
            assert torch.equal(fc.bias, orig.mlp.c_fc.bias[cols])
        else:
            gate, up, down = block.mlp.gate_proj, block.mlp.up_proj, block.mlp.down_proj
            assert gate.weight.shape == up.weight.shape == (64, 64) and down.weight.shape == (64, 64)
            assert gate.out_features == up.out_features == down.in_features == 64
            rows = _source_index(orig.mlp.up_proj.weight, up.weight)
            assert rows == sorted(rows)
            assert torch.equal(down.weight, orig.mlp.down_proj.weight[:, rows])
            assert torch.equal(gate.weight, orig.mlp.gate_proj.weight[rows])
    _runs(out)


@pytest.mark.parametrize("model_name", MODELS)
def test_blocks_dropped_and_model_runs(model_name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_name)
    total = len(find_decoder_blocks(model)[1])
    out = prune(model, sparsity=0.5, method="blocks")
    blocks = find_decoder_blocks(out)[1]
    dropped = round(0.5 * total)
    assert len(blocks) == total - dropped
    assert out.config.num_hidden_layers == total - dropped
    assert model.config.num_hidden_layers == total
    for i, block in enumerate(blocks):
        assert all(m.layer_idx == i for m in block.modules() if hasattr(m, "layer_idx"))
    if model_name == "qwen2":
        assert len(out.config.layer_types) == len(blocks)
    _runs(out, cache=False)
    _runs(out)


def test_explicit_blocks(llama: nn.Module) -> None:
    out = prune(llama, method="blocks", blocks=(0, 2))
    kept = [llama.model.layers[1], llama.model.layers[3]]
    assert len(out.model.layers) == 2
    for new, old in zip(out.model.layers, kept):
        for (n1, p1), (n2, p2) in zip(new.named_parameters(), old.named_parameters()):
            assert n1 == n2 and torch.equal(p1, p2)
    _runs(out)
    assert out.config.num_hidden_layers == 2


def test_gpt2_n_layer_updated(gpt2: nn.Module) -> None:
    out = prune(gpt2, method="blocks", blocks=(1,))
    assert out.config.n_layer == 2 and len(out.transformer.h) == 2


# ---------------------------------------------------------------- config


def test_describe_strength_and_dict() -> None:
    cfg = PruningConfig(0.5, method="nm", n=2, m=4)
    assert cfg.describe().startswith("2:4 semi-structured")
    assert cfg.strength == 0.5
    assert PruningConfig(0.2).strength < PruningConfig(0.6).strength
    per = PruningConfig(0.5, per_layer={"layers.0": 0.9})
    assert per.to_dict()["per_layer"] == {"layers.0": 0.9}
    assert hash(per) == hash(PruningConfig(0.5, per_layer={"layers.0": 0.9}))
    assert per == PruningConfig(0.5, per_layer={"layers.0": 0.9})


@pytest.mark.parametrize(
    "kwargs,argument,value",
    [
        ({"sparsity": 1.5}, "sparsity", "1.5"),
        ({"sparsity": 1.0}, "sparsity", "1.0"),
        ({"sparsity": -0.1}, "sparsity", "-0.1"),
        ({"method": "random"}, "method", "'random'"),
        ({"method": "nm", "n": 5, "m": 4}, "n", "5"),
        ({"method": "nm", "n": 0, "m": 4}, "n", "0"),
        ({"method": "magnitude", "blocks": (1,)}, "blocks", "(1,)"),
        ({"method": "blocks", "blocks": (1, 1)}, "blocks", "(1, 1)"),
        ({"per_layer": {"layers.0": 2.0}}, "per_layer", "2.0"),
        ({"method": "nm", "per_layer": {"layers.0": 0.5}}, "per_layer", "layers.0"),
    ],
)
def test_bad_arguments(kwargs: dict, argument: str, value: str) -> None:
    with pytest.raises(InvalidArgument, match=argument) as info:
        PruningConfig(**kwargs)
    assert value in str(info.value)


def test_bad_arguments_at_apply(llama: nn.Module) -> None:
    with pytest.raises(InvalidArgument, match=r"per_layer.*'nonexistent'"):
        prune(llama, per_layer={"nonexistent": 0.5})
    with pytest.raises(InvalidArgument, match=r"targets.*'q_projection'"):
        prune(llama, targets=("q_projection",))
    # Bad arguments read "{name}: must be {what}, got {value}" (pytest_hemorrhage.arguments).
    with pytest.raises(InvalidArgument, match=r"blocks: must be distinct indices in \[0, 3\].*got \(4,\)"):
        prune(llama, method="blocks", blocks=(4,))
    with pytest.raises(InvalidArgument, match="blocks"):
        prune(llama, method="blocks", blocks=(0, 1, 2, 3))


def test_models_carrying_a_per_layer_config_deep_copy(llama: nn.Module) -> None:
    import copy

    out = prune(llama, sparsity=0.5, per_layer={"layers.0.": 0.9})
    twin = copy.deepcopy(out)
    assert twin.hemorrhage_modification == out.hemorrhage_modification
    assert all(torch.equal(a, b) for a, b in zip(twin.state_dict().values(), out.state_dict().values()))


def test_magnitude_mask_equals_a_stable_sort_with_ties() -> None:
    from pytest_hemorrhage.modify.prune import magnitude_mask

    g = torch.Generator().manual_seed(0)
    w = torch.randint(-3, 4, (16, 24), generator=g).float()  # many ties
    for sparsity in (0.1, 0.5, 0.77):
        k = int(sparsity * w.numel() + 0.5)
        expected = torch.ones(w.numel(), dtype=torch.bool)
        expected[torch.argsort(w.abs().flatten(), stable=True)[:k]] = False
        assert torch.equal(magnitude_mask(w, sparsity), expected.reshape(w.shape))
