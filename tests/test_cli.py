"""The `hemorrhage compare` command: exit codes, reports, GitHub summary."""

import copy
import json
import xml.etree.ElementTree as ET

import pytest
import torch
from tiny_models import WordTokenizerFolder, tiny_llama

from pytest_hemorrhage.cli import main


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    base = tiny_llama()
    same = copy.deepcopy(base)
    broken = copy.deepcopy(base)
    with torch.no_grad():
        for p in broken.model.layers[1].parameters():
            if p.dim() == 2:
                p.add_(30 * p.std() * torch.randn_like(p))
    dirs = {}
    for name, model in (("base", base), ("same", same), ("broken", broken)):
        model.save_pretrained(root / name)
        WordTokenizerFolder.save(root / name)
        dirs[name] = str(root / name)
    return dirs


def test_identical_candidate_exits_0_and_writes_reports(model_dirs, tmp_path, monkeypatch, capsys):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code = main(["compare", model_dirs["base"], model_dirs["same"], "--probes", "12", "--max-length", "32",
                 "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"),
                 "--markdown", str(tmp_path / "r.md")])
    assert code == 0
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "pass"
    case = ET.parse(tmp_path / "r.xml").getroot().find("testsuite/testcase")
    assert case.find("failure") is None
    assert {p.get("name") for p in case.iter("property")} >= {"verdict", "kl", "top1"}
    assert "✅ pass" in (tmp_path / "r.md").read_text() and "✅ pass" in summary.read_text()
    assert "No hemorrhage" in capsys.readouterr().out


def test_broken_candidate_exits_1_with_failure_in_junit(model_dirs, tmp_path):
    code = main(["compare", model_dirs["base"], model_dirs["broken"], "--probes", "12", "--max-length", "32",
                 "--max-kl", "0.001", "--junit", str(tmp_path / "r.xml")])
    assert code == 1
    failure = ET.parse(tmp_path / "r.xml").getroot().find("testsuite/testcase/failure")
    assert failure.get("message").startswith("Model hemorrhage")


@pytest.mark.parametrize("argv, message", [
    (["compare", "/nonexistent", "/nonexistent"], "not a Hugging Face model folder"),
    (["compare", "BASE", "BASE", "--max-kl", "abc"], "max_kl must be a number"),
])
def test_input_errors_exit_2(model_dirs, capsys, argv, message):
    argv = [model_dirs["base"] if a == "BASE" else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_usage_error_exits_2(capsys):
    assert main(["frobnicate"]) == 2


def test_snapshot_then_compare_against_it(model_dirs, tmp_path, capsys):
    snap = tmp_path / "base.safetensors"
    assert main(["snapshot", model_dirs["base"], "--out", str(snap), "--probes", "12", "--max-length", "32"]) == 0
    assert "bytes per scored token" in capsys.readouterr().out
    assert main(["compare", str(snap), model_dirs["same"], "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["identity"]["n_probes"] == 12 and report["verdict"] == "pass"
    assert main(["compare", str(snap), model_dirs["broken"], "--max-kl", "0.001"]) == 1


def test_damaged_snapshot_exits_2(model_dirs, tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 5)
    assert main(["compare", str(bad), model_dirs["same"]]) == 2
    assert "truncated" in capsys.readouterr().err


def test_snapshot_of_a_folder_without_tokenizer_names_the_model(tmp_path, capsys):
    folder = tmp_path / "no_tokenizer"
    tiny_llama().save_pretrained(folder)
    assert main(["snapshot", str(folder), "--out", str(tmp_path / "s.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "model: no tokenizer in" in err and "save_pretrained" in err
    assert not (tmp_path / "s.safetensors").exists()
