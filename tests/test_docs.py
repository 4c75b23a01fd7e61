"""Every Python block of README.md, example_suites/README.md and docs/*.md runs as a test.

The convention is written for authors in docs/README.md ("Code blocks are tests"):

* a fence with the info string ``python`` runs. The blocks of one file run in order in one
  namespace, like notebook cells, with a fresh working folder per file;
* ``python sketch`` shows a signature or a fragment to adapt: it is compiled, never run;
* a block that defines a top-level ``def test_...`` is a test module: it runs through
  ``pytester`` (the plugin loaded, as in a user's project) and must pass;
* a block whose text mentions ``default_model`` loads the embedded SmolLM2-135M: its case is
  marked ``slow``. A slow block sees the names of every earlier block of its file, a fast
  block only those of earlier fast blocks, so the fast tier never loads the model.

A failure names the document and the line of the block; tracebacks point at document lines.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "example_suites" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SKETCH = "sketch"
SLOW_MARK = "default_model"
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True, repr=False)
class Block:
    """One fenced Python block of a document."""

    path: Path
    line: int  # line number of the block's first code line (1-based)
    code: str
    sketch: bool

    def __repr__(self) -> str:
        return f"Block({self.where})"

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def slow(self) -> bool:
        return SLOW_MARK in self.code

    @property
    def is_test_module(self) -> bool:
        return any(isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
                   for node in ast.parse(self.code).body)

    def compiled(self):
        # Blank lines in front keep the document's line numbers in tracebacks and error messages.
        return compile("\n" * (self.line - 1) + self.code, str(self.path), "exec")


@dataclass
class Parsed:
    blocks: list[Block]
    fences: list[tuple[int, int]]  # (opening line, closing line) of every fenced block, any language
    errors: list[str]


def parse(path: Path) -> Parsed:
    """The fenced blocks of a Markdown file (CommonMark fences: ``` or ~~~, closed by a longer-or-equal run)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = Parsed([], [], [])
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].strip()
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), None)
        where = f"{path.relative_to(ROOT)}:{i + 1}"
        if end is None:
            out.errors.append(f"{where}: a fenced block opened here is never closed")
            return out
        out.fences.append((i + 1, end + 1))
        words = info.split()
        if words and words[0] == "python":
            unknown = [w for w in words[1:] if w != SKETCH]
            if unknown:
                out.errors.append(f"{where}: unknown word(s) {unknown} after 'python'; allowed: '{SKETCH}'")
            code = "\n".join(lines[i + 1:end]) + "\n"
            block = Block(path, i + 2, code, sketch=SKETCH in words)
            try:
                ast.parse(code)
            except SyntaxError as exc:
                out.errors.append(f"{block.where}: not valid Python ({exc.msg}, document line {i + 1 + (exc.lineno or 1)})")
            else:
                out.blocks.append(block)
        i = end + 1
    return out


PARSED = {path: parse(path) for path in DOCUMENTS}
BLOCKS = [block for parsed in PARSED.values() for block in parsed.blocks]


def _case(block: Block):
    marks = [pytest.mark.slow] if block.slow and not block.sketch else []
    return pytest.param(block, id=block.where, marks=marks)


# ----------------------------------------------------------------------------- the documents


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_document_parses_and_has_python_blocks(path: Path) -> None:
    parsed = PARSED[path]
    assert not parsed.errors, "\n".join(parsed.errors)
    assert parsed.blocks, f"{path.relative_to(ROOT)}: no ```python block found; every document shows at least one"
    # An independent count: every line that opens a Python fence is a parsed block, or lies inside another fence.
    starts = {block.line - 1 for block in parsed.blocks}
    inside = lambda n: any(a < n < b for a, b in parsed.fences)  # noqa: E731
    text = path.read_text(encoding="utf-8").splitlines()
    missed = [n for n, line in enumerate(text, 1)
              if re.match(r"^ {0,3}(`{3,}|~{3,})\s*python\b", line) and n not in starts and not inside(n)]
    assert not missed, f"{path.relative_to(ROOT)}: Python fences at lines {missed} were not parsed"


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    inside = (PARSED.get(path) or parse(path)).fences
    lines = path.read_text(encoding="utf-8").splitlines()
    return {_anchor(line.lstrip("#")) for n, line in enumerate(lines, 1)
            if line.startswith("#") and not any(a < n < b for a, b in inside)}


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        file, _, anchor = target.partition("#")
        where = (path.parent / file).resolve() if file else path
        if not where.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
            broken.append(f"{target} (no such heading in {where.relative_to(ROOT)})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"


def test_the_documents_are_found() -> None:
    names = {str(p.relative_to(ROOT)) for p in DOCUMENTS}
    assert {"README.md", "example_suites/README.md", "docs/README.md", "docs/architecture.md"} <= names


# ----------------------------------------------------------------------------- running the blocks


class Notebook:
    """The shared namespace of one document's blocks in one tier, run in document order."""

    current: dict[bool, "Notebook"] = {}  # per tier (slow or not): only one document's models stay in memory

    def __init__(self, path: Path, folder: Path) -> None:
        self.path, self.folder = path, folder
        self.namespace: dict = {"__name__": f"doc:{path.name}"}
        self.done: list[Block] = []

    @classmethod
    def for_block(cls, block: Block, folder_factory) -> "Notebook":
        book = cls.current.get(block.slow)
        before = _runnable_before(block)
        if book is None or book.path != block.path or book.done != before[:len(book.done)]:
            book = cls(block.path, folder_factory())
            cls.current[block.slow] = book
        for earlier in before[len(book.done):]:
            try:
                book.run(earlier)
            except Exception as exc:
                raise AssertionError(
                    f"{earlier.where}, an earlier block that {block.where} builds on, failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        return book

    def run(self, block: Block) -> None:
        cwd = Path.cwd()
        os.chdir(self.folder)
        try:
            exec(block.compiled(), self.namespace)
        finally:
            os.chdir(cwd)
        self.done.append(block)


def _runnable_before(block: Block) -> list[Block]:
    """The earlier blocks of the same document whose names ``block`` may use."""
    same = [b for b in PARSED[block.path].blocks if not b.sketch and not b.is_test_module]
    earlier = [b for b in same if b.line < block.line]
    return earlier if block.slow else [b for b in earlier if not b.slow]


@pytest.fixture(scope="module")
def warm_imports():
    """Import what the in-process pytester runs import, once, before the first such run.

    pytester restores ``sys.modules`` after an in-process run; a heavy extension module
    (torch) imported inside that run and dropped afterwards cannot be imported again.
    """
    import hypothesis  # noqa: F401  (its pytest plugin imports it lazily)
    from transformers import LlamaConfig, LlamaForCausalLM

    import pytest_hemorrhage as ph

    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1)).eval()
    ph.compare(tiny, ph.modify.quantize(tiny, bits=8), torch.randint(0, 32, (2, 6)))


@pytest.mark.parametrize("block", [_case(b) for b in BLOCKS])
def test_doc_block(block: Block, request, tmp_path_factory) -> None:
    if not block.slow:
        request.getfixturevalue("one_thread")  # tiny models: torch's intra-op threads only add latency
    if block.sketch:
        block.compiled()  # shows a shape to adapt: it must at least be Python
        return
    if block.is_test_module:
        request.getfixturevalue("warm_imports")
        _run_test_module(block, request.getfixturevalue("pytester"))
        return
    book = Notebook.for_block(block, lambda: tmp_path_factory.mktemp(block.path.stem))
    book.run(block)


def _run_test_module(block: Block, pytester: pytest.Pytester) -> None:
    module = pytester.path / f"test_doc_line_{block.line}.py"
    module.write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")  # (makepyfile strips the padding)
    result = pytester.runpytest_inprocess(str(module), "-p", "no:cacheprovider", "-q")
    outcomes = result.parseoutcomes()
    ok = outcomes.get("passed", 0) > 0 and not any(outcomes.get(k) for k in ("failed", "errors", "error", "xpassed"))
    assert ok, (f"{block.where}: the test module in this block did not pass ({outcomes}); its line numbers are "
                f"the document's\n" + result.stdout.str())


# ----------------------------------------------------------------------------- the package's attributes


def test_submodules_are_attributes_in_a_fresh_interpreter() -> None:
    # The README's first lines: `import pytest_hemorrhage as ph` then `ph.models.default_model()`.
    script = (
        "import sys\n"
        "import pytest_hemorrhage as ph\n"
        "assert callable(ph.models.default_model), ph.models\n"
        "print('torch after ph.models:', 'torch' in sys.modules)\n"
        "print('modify:', ph.modify.quantize.__name__, ph.strategies.modifications.__name__)\n"
        "print('dir:', sorted({'models', 'modify', 'strategies', 'compare'} - set(dir(ph))))\n"
        "import pytest_hemorrhage.diagnose, pytest_hemorrhage.sweep\n"  # as a failing check's diagnosis does
        "print('functions:', ph.diagnose.__name__, callable(ph.diagnose), callable(ph.sweep))\n"
        "try:\n"
        "    ph.no_such_name\n"
        "except AttributeError as exc:\n"
        "    print('missing:', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "torch after ph.models: False" in lines  # submodules load lazily: no torch for ph.models
    assert "modify: quantize modifications" in lines
    assert "dir: []" in lines
    assert "functions: diagnose True True" in lines  # a submodule import does not shadow its function
    assert "missing: module 'pytest_hemorrhage' has no attribute 'no_such_name'" in lines
