"""`hemorrhage attribute` and `hemorrhage localise` on a tiny Llama's GGUF files (fast tier)."""

from __future__ import annotations

import json

import gguf
import pytest
from model_folders import save_model_folder
from tiny_gguf import requantise_gguf, save_byte_tokenizer, write_tiny_gguf

import pytest_hemorrhage as ph
from pytest_hemorrhage.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def files(gguf_baseline, gguf_probes, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-attribution")
    paths = {name: root / f"{name}.gguf" for name in ("F32", "Q4_0", "planted")}
    write_tiny_gguf(gguf_baseline, paths["F32"])
    requantise_gguf(paths["F32"], paths["Q4_0"], lambda name: Q.Q4_0)
    requantise_gguf(paths["F32"], paths["planted"], lambda name: Q.Q4_0 if name.startswith("blk.1.") else Q.Q8_0)
    paths["snapshot"] = root / "base.safetensors"
    ph.record_snapshot(gguf_baseline, gguf_probes, paths["snapshot"])
    paths["folder"] = save_model_folder(gguf_baseline, root / "model")
    paths["byte-folder"] = root / "byte-model"
    gguf_baseline.save_pretrained(paths["byte-folder"])
    save_byte_tokenizer(paths["byte-folder"])
    return {name: str(path) for name, path in paths.items()}


def test_attribute_prints_the_parts_writes_json_and_exits_with_the_gate(files, tmp_path, capsys):
    out = tmp_path / "a.json"
    argv = ["attribute", files["snapshot"], "--runtime", "llama.cpp", files["Q4_0"], "--reference", files["F32"],
            "--json", str(out), "--markdown", str(tmp_path / "a.md"), "--min-top1-agreement", "0.5"]
    assert main([*argv, "--max-kl", "2e-5"]) == 1
    text = capsys.readouterr().out
    assert "cause: the compression" in text and "compression  candidate vs reference" in text
    data = json.loads(out.read_text())
    assert data["cause"] == "compression" and set(data["reports"]) == {"total", "runtime", "compression"}
    assert "| runtime | reference vs baseline |" in (tmp_path / "a.md").read_text()
    assert main([*argv, "--max-kl", "0.1"]) == 0
    assert json.loads(out.read_text())["cause"] == "none"


def test_attribute_writes_the_reference_from_a_baseline_folder(files, capsys):
    # The folder's tokenizer is the file's byte vocabulary, so the runtime's token checks pass.
    assert main(["attribute", files["byte-folder"], "--runtime", "llama.cpp", files["Q4_0"], "--probes", "8",
                 "--max-kl", "2e-5", "--min-top1-agreement", "0.5"]) == 1
    out = capsys.readouterr().out
    assert "F32 GGUF written from the baseline's weights" in out and "cause: the compression" in out


def test_localise_names_the_planted_block(files, tmp_path, capsys):
    out = tmp_path / "l.json"
    assert main(["localise", files["folder"], files["planted"], "--probes", "8", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "blamed: model.layers.1" in text
    assert json.loads(out.read_text())["blamed"] == "model.layers.1"


def test_localise_keeps_the_blamed_block_from_the_finer_file_until_the_gate_passes(files, tmp_path, capsys):
    argv = ["localise", files["byte-folder"], files["planted"], "--probes", "8", "--keep-from", files["F32"],
            "--out-dir", str(tmp_path / "remade"), "--threads", "1", "--max-kl", "2e-5",
            "--min-top1-agreement", "0.5", "--json", str(tmp_path / "l.json")]
    assert main([*argv, "--steps", "4", "--bisect"]) == 0
    assert "passes with model.layers.1 kept from" in capsys.readouterr().out
    attempts = json.loads((tmp_path / "l.json").read_text())["verifications"]
    assert [len(a["kept"]) for a in attempts][-1] == 1 and (tmp_path / "remade" / "planted.keep-1.gguf").is_file()


@pytest.mark.parametrize("argv, message", [
    (["localise", "{snapshot}", "{planted}"], "localise swaps weights into the baseline"),
    (["localise", "{folder}", "{planted}", "--keep-from", "missing.gguf"], "--keep-from: missing.gguf is not a file"),
    (["attribute", "{snapshot}", "--runtime", "llama.cpp", "{Q4_0}", "--reference", "missing.gguf"],
     "--reference: missing.gguf is not a file"),
    (["attribute", "{snapshot}", "--runtime", "llama.cpp", "{Q4_0}"],
     "reference: none given, and the baseline is a snapshot"),
])
def test_usage_errors_exit_2_naming_the_cause(files, capsys, argv, message):
    assert main([arg.format(**files) for arg in argv]) == 2
    assert message in capsys.readouterr().err
