"""The README, followed as a new user would, with their own saved model (slow tier).

From a fresh copy of the project: the README's install command, then the default model saved as
"my own model" with ``save_pretrained``, then the README's first test gating it through the
``hemorrhage_model`` ini option (a passing gate, and the same test with a harmful recipe failing),
then the README's CI gate commands on the same folder. Every command and code block comes from
the README itself, with only the documented placeholders (paths, the bit width) filled in, so a
README that drifts from what works fails here.

The copy holds the files git tracks or would track (``git ls-files --cached --others
--exclude-standard``), so uncommitted work is walked through too; a clean checkout of main is the
same thing. It takes several minutes: the install alone builds a virtual environment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_docs import ROOT, parse

pytestmark = pytest.mark.slow

README = ROOT / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def _bash_lines(section: str) -> list[str]:
    """Commands of the section's first bash block, continuation lines joined, comments dropped."""
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"no bash block in README section {section.splitlines()[0]!r}"
    joined = block.group(1).replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in joined.splitlines() if line.split("#")[0].strip()]


def _first_test_block() -> str:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("## A first test") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("## ")) + 1
    blocks = [b for b in parse(README).blocks if start < b.line < end]
    assert blocks, "the README's 'A first test' section has no python block"
    return blocks[0].code


def _copy_project(dest: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a deleted but still tracked file is not part of the working tree
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _run(args: list[str] | str, cwd: Path, env: dict[str, str], timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          shell=isinstance(args, str))


def _show(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-4000:]}"


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """A fresh project copy installed with the README's command, and a user project beside it."""
    base = tmp_path_factory.mktemp("walkthrough")
    clone, project = base / "pytest-hemorrhage", base / "my-project"
    clone.mkdir()
    project.mkdir()
    _copy_project(clone)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("VENV", None)  # scripts/setup.sh must make the README's .venv, not reuse a CI one

    commands = _bash_lines(_section("Set up and run (two commands)"))
    install = commands[0].split("&&")[0].strip()
    assert install == "bash scripts/setup.sh", f"the README's install command changed: {commands[0]!r}"
    assert ".venv/bin/python -m pytest" in commands, f"the README's test command changed: {commands}"
    installed = _run(install, clone, env)
    assert installed.returncode == 0, _show(installed)
    venv_bin = clone / ".venv" / "bin"
    env["PATH"] = f"{venv_bin}{os.pathsep}{env['PATH']}"  # as after `source .venv/bin/activate`
    return clone, project, env, venv_bin / "python"


def test_readme_walkthrough_with_my_own_model(walk):
    clone, project, env, python = walk

    # "my own model": the default model saved as a Hugging Face folder, plus two recipes of it
    save = (
        "import sys\n"
        "import pytest_hemorrhage as ph\n"
        "from pytest_hemorrhage.modify import quantize\n"
        "model, tokenizer = ph.models.default_model()\n"
        "for folder, bits in (('my_model', None), ('int8', 8), ('int3', 3)):\n"
        "    saved = model if bits is None else quantize(model, bits=bits)\n"
        "    saved.save_pretrained(folder)\n"
        "    tokenizer.save_pretrained(folder)\n"
    )
    saved = _run([str(python), "-c", save], project, env)
    assert saved.returncode == 0, _show(saved)

    # The README's first test, on my model through the documented ini line.
    first_test = _first_test_block()
    assert "bits=8" in first_test and "hemorrhage_default_model" in first_test
    (project / "pytest.ini").write_text("[pytest]\nhemorrhage_model = my_model\n")
    (project / "test_recipe.py").write_text(first_test)
    passing = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_recipe.py"], project, env)
    assert passing.returncode == 0, _show(passing)
    assert "1 passed" in passing.stdout, _show(passing)

    # The same test with a harmful recipe fails and explains itself. --hemorrhage-no-suggest (docs/pytest.md)
    # skips the mitigation search, minutes on this model; tests/test_model_folder.py covers it on a folder.
    (project / "test_recipe.py").write_text(first_test.replace("bits=8", "bits=3"))
    failing = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hemorrhage-no-suggest",
                    "test_recipe.py"], project, env)
    assert failing.returncode == 1, _show(failing)
    assert "1 failed" in failing.stdout and "Model hemorrhage" in failing.stdout, _show(failing)
    assert "first layer past threshold" in failing.stdout, _show(failing)

    # The README's CI gate: snapshot my model once, then compare the recipes' folders against it.
    snapshot, compare = _bash_lines(_section("The CI gate"))
    snapshot = snapshot.replace("path/to/baseline", "my_model") + " --probes 16"  # docs/cli.md; default 64
    recorded = _run(snapshot, project, env)
    assert recorded.returncode == 0, _show(recorded)
    gate_passes = _run(compare.replace("path/to/candidate", "int8"), project, env)
    assert gate_passes.returncode == 0, _show(gate_passes)
    for written in ("report.json", "junit.xml", "summary.md", "report.html"):
        assert (project / written).stat().st_size > 0, written
    gate_fails = _run(compare.replace("path/to/candidate", "int3"), project, env)
    assert gate_fails.returncode == 1, _show(gate_fails)
    assert "Model hemorrhage" in gate_fails.stdout, _show(gate_fails)
