"""The `hemorrhage compare` command: exit codes, reports, GitHub summary."""

import copy
import json
import warnings
import xml.etree.ElementTree as ET

import pytest
from model_folders import break_block, save_model_folder
from tiny_models import tiny_llama

from pytest_hemorrhage.cli import main


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    base = tiny_llama()
    models = {"base": base, "same": copy.deepcopy(base), "broken": break_block(base, 1)}
    return {name: save_model_folder(model, root / name) for name, model in models.items()}


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
    # The plugin's JUnit property names (one schema for both; tests/plugin/test_junit.py compares them).
    assert {p.get("name") for p in case.iter("property")} >= {"hemorrhage_verdict", "hemorrhage_kl",
                                                              "hemorrhage_kl_ci_high", "hemorrhage_top1"}
    assert "✅ pass" in (tmp_path / "r.md").read_text() and "✅ pass" in summary.read_text()
    out = capsys.readouterr().out
    assert "No hemorrhage" in out
    # Every file written is listed, after the report.
    assert out.splitlines()[-4:] == [
        f"wrote JSON report: {tmp_path / 'r.json'}", f"wrote Markdown summary: {tmp_path / 'r.md'}",
        f"wrote JUnit XML: {tmp_path / 'r.xml'}", f"added the Markdown summary to $GITHUB_STEP_SUMMARY: {summary}"]


def test_broken_candidate_exits_1_with_failure_in_junit(model_dirs, tmp_path, capsys):
    # --no-suggest: this test is about the exit code and the JUnit file, not the mitigations.
    code = main(["compare", model_dirs["base"], model_dirs["broken"], "--probes", "12", "--max-length", "32",
                 "--max-kl", "0.001", "--no-suggest", "--junit", str(tmp_path / "r.xml")])
    assert code == 1
    failure = ET.parse(tmp_path / "r.xml").getroot().find("testsuite/testcase/failure")
    assert failure.get("message").startswith("Model hemorrhage")
    out = capsys.readouterr().out
    assert failure.text == out[:out.index("\nwrote JUnit XML")]  # the printed message, advice included
    assert "verified fix" not in out and "best mitigation tried" not in out


def test_a_failure_explains_itself_with_a_verified_fix(model_dirs, capsys):
    code = main(["compare", model_dirs["base"], model_dirs["broken"], "--probes", "12", "--max-length", "32"])
    assert code == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Model hemorrhage: mean KL ")
    assert any(line.startswith("first layer past threshold: model.layers.1 (SQNR ") for line in lines)
    # Only block 1 was changed: restoring its linears to the baseline's weights, tried on a copy and
    # measured again, passes.
    fix = next(line for line in lines if line.startswith(("verified fix: ", "best mitigation tried")))
    assert fix.startswith("verified fix: restored ") and "model.layers.1." in fix and fix.endswith("(checked, passes)")
    assert not any("model.layers.0." in line or "model.layers.2." in line for line in lines)
    # The way to accept it names this command's own options, never pytest's.
    assert lines[-1] == ("to accept this on purpose: pass a looser threshold (--max-kl VALUE "
                         "--min-top1-agreement VALUE --max-ppl-ratio VALUE)")
    assert not any("pytest" in line or "--hemorrhage-" in line for line in lines)


@pytest.mark.parametrize("flag", ["--progress", None])
def test_progress_says_when_mitigations_start_and_what_they_cost(model_dirs, capsys, flag):
    argv = ["compare", model_dirs["base"], model_dirs["broken"], "--probes", "12", "--max-length", "32"]
    assert main(argv + ([flag] if flag else [])) == 1
    captured = capsys.readouterr()
    # The report itself says what the mitigations cost, progress or not.
    assert any(line.startswith("mitigations tried in ") and "(fallback " in line
               for line in captured.out.splitlines())
    prefix = f"hemorrhage: {model_dirs['broken']} vs {model_dirs['base']}: "  # the check's name
    lines = [line for line in captured.err.splitlines() if line.startswith(prefix)]
    if flag is None:  # standard error is no terminal here: no progress unless asked
        assert lines == [] and "probe/s" not in captured.err
        return
    assert lines[0].startswith(prefix + "compared 12 probes in ") and lines[0].endswith(": fail")
    assert lines[1].startswith(prefix + "trying mitigations on copies: fallback")
    assert any(line.startswith(prefix + "tried fallback in ") for line in lines[2:-1])
    assert lines[-1].startswith(prefix + "mitigations tried in ")


@pytest.mark.parametrize("argv, message", [
    # A missing path is named as missing (this read "not a Hugging Face model folder (no config.json)").
    (["compare", "/nonexistent", "/nonexistent"], "baseline: /nonexistent does not exist"),
    (["compare", "BASE", "BASE", "--max-kl", "abc"], "max_kl must be a number"),
    # The command's own option names, never pytest's, and the number to write instead.
    (["compare", "BASE", "BASE", "--max-kl", "2%"],
     "hemorrhage: error: command line option --max-kl: max_kl must be a number, not a percentage: 0.02"),
    (["compare", "BASE", "BASE", "--min-top1-agreemnt", "0.9"],
     "unrecognized arguments: --min-top1-agreemnt (did you mean --min-top1-agreement?) 0.9"),
    (["sweep", "--modify", "bits", "--strengths", "8", "--probs", "3"], "unrecognized arguments: --probs (did you mean --probes?)"),
    (["compare", "BASE", "BASE", "--min-top1-agreement", "95"],
     "command line option --min-top1-agreement: min_top1_agreement=95.0 is outside the allowed range [0.0, 1.0] "
     "(did you mean 0.95?)"),
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
    capsys.readouterr()
    assert main(["compare", str(snap), model_dirs["broken"], "--max-kl", "0.001"]) == 1
    lines = capsys.readouterr().out.splitlines()
    # Against a snapshot: no mitigation (no live baseline to try them on), and the command that
    # records the baseline again.
    assert not any(line.startswith(("verified fix", "best mitigation tried")) for line in lines)
    assert lines[-1].startswith("to accept this on purpose: pass a looser threshold (--max-kl VALUE")
    assert lines[-1].endswith(f"), or record the baseline snapshot again: hemorrhage snapshot BASELINE_MODEL_DIR "
                              f"--out {snap}")


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


@pytest.fixture
def no_weights_load(monkeypatch):
    """Fail the test if a model or a snapshot is loaded: path errors must come before."""
    import transformers

    import pytest_hemorrhage.snapshot

    def refuse(*args, **kwargs):
        raise AssertionError(f"weights were loaded: {args}")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(pytest_hemorrhage.snapshot, "load_snapshot", refuse)


@pytest.fixture(scope="module")
def snapshot_file(model_dirs, tmp_path_factory):
    path = tmp_path_factory.mktemp("snapshots") / "base.safetensors"
    assert main(["snapshot", model_dirs["base"], "--out", str(path), "--probes", "4", "--max-length", "16"]) == 0
    return str(path)


def test_a_missing_path_is_named_as_missing_before_any_weights_load(model_dirs, snapshot_file, tmp_path,
                                                                     no_weights_load, capsys):
    missing = str(tmp_path / "no_such_model")
    for argv, message in [
        ([model_dirs["base"], missing], f"candidate: {missing} does not exist"),
        ([snapshot_file, missing], f"candidate: {missing} does not exist"),
        ([missing, model_dirs["same"]], f"baseline: {missing} does not exist"),
    ]:
        assert main(["compare", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and "config.json" not in err
    assert main(["snapshot", missing, "--out", str(tmp_path / "s.safetensors")]) == 2
    assert f"model: {missing} does not exist" in capsys.readouterr().err


def test_arguments_in_the_wrong_order_are_refused_with_the_right_order(model_dirs, snapshot_file,
                                                                       no_weights_load, capsys):
    base = model_dirs["base"]
    assert main(["compare", base, snapshot_file]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hemorrhage: error: the arguments are in the wrong order: the candidate {snapshot_file} "
                          f"is a file (a snapshot) and the baseline {base} a folder")
    assert "hemorrhage compare SNAPSHOT_OR_BASELINE CANDIDATE" in err
    assert err.rstrip().endswith(f"hemorrhage compare {snapshot_file} {base}")
    # Two snapshots: the candidate must be a model folder.
    assert main(["compare", snapshot_file, snapshot_file]) == 2
    assert f"candidate: {snapshot_file} is a file; the candidate is a Hugging Face model folder" in \
        capsys.readouterr().err


def test_a_folder_without_config_is_still_named_as_such(model_dirs, tmp_path, no_weights_load, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", model_dirs["base"], str(empty)]) == 2
    assert f"candidate: {empty} is not a Hugging Face model folder (no config.json)" in capsys.readouterr().err


# ---------------------------------------------------------------------- tokenizers and options against a snapshot
@pytest.fixture(scope="module")
def recorded_16(model_dirs, tmp_path_factory):
    """A snapshot of the base folder on 16 built-in probes of 32 tokens."""
    path = tmp_path_factory.mktemp("snap16") / "base.safetensors"
    assert main(["snapshot", model_dirs["base"], "--out", str(path), "--probes", "16", "--max-length", "32"]) == 0
    return str(path)


def test_a_candidate_folder_with_another_tokenizer_fails_the_snapshot_gate(model_dirs, recorded_16, tmp_path, capsys):
    from model_folders import save_word_tokenizer
    from transformers import AutoTokenizer

    wrong = tmp_path / "wrong_tokenizer"
    tiny_llama().save_pretrained(wrong)
    save_word_tokenizer(wrong, size=60)  # the model's own weights, a tokenizer of another vocabulary
    assert main(["compare", recorded_16, str(wrong), "--no-suggest"]) == 2
    err = capsys.readouterr().err
    assert f"tokenizer mismatch: the snapshot {recorded_16} was recorded with tokenizer" in err
    assert f"the candidate tokenizer (from {wrong}) is" in err and "--allow-tokenizer-mismatch" in err
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, as a note of the report
        assert main(["compare", recorded_16, str(wrong), "--no-suggest", "--allow-tokenizer-mismatch"]) == 0
    assert "note: allowed (allow_tokenizer_mismatch=True): tokenizer mismatch" in capsys.readouterr().out
    # The same tokenizer saved again is the same tokenizer: no false alarm.
    same = tmp_path / "same_tokenizer"
    tiny_llama().save_pretrained(same)
    AutoTokenizer.from_pretrained(model_dirs["base"]).save_pretrained(same)
    assert main(["compare", recorded_16, str(same)]) == 0


def test_a_candidate_folder_without_tokenizer_is_said_to_be_unchecked(recorded_16, tmp_path, capsys):
    bare = tmp_path / "bare"
    tiny_llama().save_pretrained(bare)
    assert main(["compare", recorded_16, str(bare)]) == 0
    assert f"warning: the candidate folder {bare} holds no tokenizer, so it was not checked" in capsys.readouterr().err


def test_probes_and_max_length_against_a_snapshot_apply_or_are_refused(model_dirs, recorded_16, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["compare", recorded_16, model_dirs["broken"], "--no-suggest", "--probes", "5", "--json", str(out),
                 "--max-length", "32"]) == 1
    assert json.loads(out.read_text())["identity"]["n_probes"] == 5  # the first 5 recorded probes
    assert main(["compare", recorded_16, model_dirs["same"], "--probes", "16", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["identity"]["n_probes"] == 16
    capsys.readouterr()
    for argv, message in [
        (["--probes", "32"], f"--probes 32: the snapshot {recorded_16} holds 16 probes; pass --probes 1 to 16"),
        (["--probes", "0"], "--probes 0: the snapshot"),
        (["--max-length", "64"], f"--max-length 64: the snapshot {recorded_16} fixes its probes (max_length=32); "
                                 "drop --max-length, or record a snapshot with it"),
    ]:
        assert main(["compare", recorded_16, model_dirs["same"], *argv]) == 2
        assert message in capsys.readouterr().err


def test_a_bert_candidate_folder_is_named_for_its_vocabulary(model_dirs, tmp_path, capsys):
    from model_folders import bert_tokenizer
    from transformers import BertConfig, BertLMHeadModel

    folder = tmp_path / "bert"
    BertLMHeadModel(BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, is_decoder=True)).save_pretrained(folder)
    bert_tokenizer(folder)
    assert main(["compare", model_dirs["base"], str(folder), "--probes", "4", "--max-length", "16"]) == 2
    err = capsys.readouterr().err
    assert "vocabulary mismatch: the baseline LlamaForCausalLM has 128 token ids (output embedding rows), the " \
           "candidate BertLMHeadModel 40" in err
    assert "Tokenize the probes" not in err


def test_a_candidate_folder_with_another_tokenizer_fails_against_a_baseline_folder(model_dirs, tmp_path, capsys):
    from model_folders import save_word_tokenizer

    wrong = tmp_path / "wrong_tokenizer"
    tiny_llama().save_pretrained(wrong)
    save_word_tokenizer(wrong, size=60)
    argv = ["compare", model_dirs["base"], str(wrong), "--probes", "4", "--max-length", "16", "--no-suggest"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "tokenizer mismatch: the baseline tokenizer has 121 tokens, the candidate tokenizer 61" in err
    assert f"(baseline tokenizer from {model_dirs['base']}; candidate tokenizer from {wrong})" in err
    assert main([*argv, "--allow-tokenizer-mismatch"]) == 0
