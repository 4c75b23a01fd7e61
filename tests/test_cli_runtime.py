"""`hemorrhage compare --runtime ...`: a candidate that runs in llama.cpp, ONNX Runtime or a server.

The runtimes' own tests run them for real; these check the command's wiring and its usage errors,
which come before any runtime is imported or any weights load.
"""

import pytest

from pytest_hemorrhage.cli import main


@pytest.fixture
def snapshot_path(tmp_path):
    path = tmp_path / "base.safetensors"
    path.write_bytes(b"not read: the usage errors come first")
    return str(path)


@pytest.mark.parametrize("argv, message", [
    (["--runtime", "openai", "http://127.0.0.1:9/v1", "--model", "x"],
     "--runtime openai against a snapshot needs --tokenizer DIR"),
    (["--runtime", "llama.cpp", "FILE", "--tokenizer", "DIR"], "--tokenizer: only for --runtime openai"),
    (["--runtime", "llama.cpp", "FILE", "--model", "x"], "--model: only for --runtime openai (a server)"),
    (["--runtime", "onnx", "FILE", "--topk", "5", "--api-key-env", "KEY"],
     "--topk, --api-key-env: only for --runtime openai"),
    (["--runtime", "llama.cpp", "DIR"], "is not a file; --runtime llama.cpp runs a GGUF file"),
    (["--runtime", "onnx", "DIR"], "is not a file; --runtime onnx runs a ONNX file"),
    (["--runtime", "tensorrt", "FILE"], "argument --runtime: invalid choice: 'tensorrt'"),
])
def test_runtime_usage_errors_exit_2(snapshot_path, tmp_path, capsys, argv, message):
    candidate = tmp_path / "model.gguf"
    candidate.write_bytes(b"")
    argv = [str(candidate) if a == "FILE" else str(tmp_path) if a == "DIR" else a for a in argv]
    runtime_at = argv.index("--runtime")
    target = argv.pop(runtime_at + 2)
    assert main(["compare", snapshot_path, target, *argv]) == 2
    assert message in capsys.readouterr().err
