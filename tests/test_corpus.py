"""The built-in probe corpus: size, coverage of every tag, snippet shape, and that it stays the same."""

from __future__ import annotations

import ast
import hashlib
from collections import Counter
from importlib.resources import files
from pathlib import Path

import pytest

from pytest_hemorrhage import corpus
from pytest_hemorrhage.corpus import BUILTIN_SNIPPETS, TAGS
from pytest_hemorrhage.errors import HemorrhageError
from pytest_hemorrhage.probes import Probes
from pytest_hemorrhage.snapshot import load_snapshot

EXPECTED_TAGS = {"prose", "news", "dialogue", "code", "math", "list", "instructions", "science", "qa"}


def test_tags_are_the_documented_set() -> None:
    assert isinstance(TAGS, tuple)
    assert set(TAGS) == EXPECTED_TAGS
    assert len(TAGS) == len(set(TAGS))


def test_at_least_220_snippets_as_tag_text_pairs() -> None:
    assert isinstance(BUILTIN_SNIPPETS, tuple)
    assert len(BUILTIN_SNIPPETS) >= 220
    for item in BUILTIN_SNIPPETS:
        assert isinstance(item, tuple) and len(item) == 2
        tag, text = item
        assert isinstance(tag, str) and isinstance(text, str)


def test_every_tag_used_and_has_at_least_20_snippets() -> None:
    counts = Counter(tag for tag, _ in BUILTIN_SNIPPETS)
    assert set(counts) == set(TAGS), "every snippet's tag must be listed in TAGS and every tag used"
    for tag in TAGS:
        assert counts[tag] >= 20, f"tag {tag!r} has only {counts[tag]} snippets"


def test_texts_are_distinct_and_non_empty() -> None:
    texts = [text for _, text in BUILTIN_SNIPPETS]
    assert all(text.strip() for text in texts)
    assert all(text == text.strip() for text in texts), "no leading/trailing whitespace"
    assert len(set(texts)) == len(texts), "duplicate snippets"
    # Not just distinct strings: no snippet is a near copy sharing its opening.
    openings = [" ".join(text.split()[:8]) for text in texts]
    assert len(set(openings)) == len(openings)


@pytest.mark.parametrize("index", range(len(BUILTIN_SNIPPETS)))
def test_word_count_bounds(index: int) -> None:
    tag, text = BUILTIN_SNIPPETS[index]
    words = len(text.split())
    assert 40 <= words <= 120, f"{tag} snippet {index} has {words} words"


def test_snippets_look_like_their_tag() -> None:
    by_tag: dict[str, list[str]] = {}
    for tag, text in BUILTIN_SNIPPETS:
        by_tag.setdefault(tag, []).append(text)
    assert all(" = " in t for t in by_tag["math"]), "math snippets write arithmetic out"
    assert all(t.startswith(("Question:", "Q:")) for t in by_tag["qa"])
    assert all(("\nAnswer:" in t) or ("\nA:" in t) for t in by_tag["qa"])
    assert all("\n- " in t or "\n1. " in t for t in by_tag["list"])
    assert all(t.count("\n") >= 3 for t in by_tag["dialogue"])
    assert all(t.count("\n") >= 5 for t in by_tag["code"])


def test_code_snippets_cover_several_languages_and_python_parses() -> None:
    code = [text for tag, text in BUILTIN_SNIPPETS if tag == "code"]
    python = [t for t in code if t.startswith(("def ", "import ", "from ", "class Stack"))]
    javascript = [t for t in code if "console.log" in t or "const " in t]
    sql = [t for t in code if "SELECT" in t or "CREATE TABLE" in t]
    shell = [t for t in code if t.startswith(("#!/", "$ ", "for file", "# Create"))]
    assert len(python) >= 5 and len(javascript) >= 4 and len(sql) >= 3 and len(shell) >= 3
    for text in python:
        ast.parse(text)  # real syntax, not pseudo-code


# sha256 over every (tag, text) pair in order, each written as tag, NUL, text, NUL in UTF-8. Computed
# from the Python module that held the corpus before it became package data (BUILTIN_SNIPPETS was
# built there from one tuple literal per tag, in TAGS order): the corpus was moved, not edited.
CORPUS_SHA256 = "7ec898db322bbc96942021b5f2afc21abc537e026879eccf8c405cad8a7b3fc7"
CI_GATE_SNAPSHOT = Path(__file__).parents[1] / "example_suites/ci_gate/snapshots/smollm2-135m-gate.safetensors"


def test_corpus_is_the_one_snapshots_were_recorded_on() -> None:
    """Order and text decide which probes a seed draws, so any edit here invalidates recorded snapshots."""
    h = hashlib.sha256()
    for tag, text in BUILTIN_SNIPPETS:
        h.update(tag.encode("utf-8") + b"\x00" + text.encode("utf-8") + b"\x00")
    assert h.hexdigest() == CORPUS_SHA256


@pytest.mark.slow
def test_builtin_probes_match_the_committed_snapshot(hemorrhage_default_model) -> None:
    """The CI gate's committed snapshot stores the fingerprint of the probes it was recorded on."""
    recorded = load_snapshot(CI_GATE_SNAPSHOT).meta["probes"]
    probes = Probes.builtin(hemorrhage_default_model[1], n=16, max_length=128)
    assert probes.name == recorded["name"]
    assert probes.fingerprint() == recorded["sha256"]


def test_snippets_are_package_data_one_file_per_tag() -> None:
    """The texts ship as data files read through importlib.resources; the module holds none of them.

    (This replaced a check that the module was plain Python data: the corpus moved out of the module.)
    """
    folder = files("pytest_hemorrhage") / "data" / "corpus"
    assert sorted(entry.name for entry in folder.iterdir()) == sorted(f"{tag}.txt" for tag in TAGS)
    source = Path(corpus.__file__).read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(source))
    assert not [text for _, text in BUILTIN_SNIPPETS if text.split("\n")[0][:40] in source]


def test_an_empty_snippet_in_a_data_file_names_the_file(tmp_path, monkeypatch) -> None:
    (tmp_path / "data" / "corpus").mkdir(parents=True)
    (tmp_path / "data" / "corpus" / "prose.txt").write_text("One snippet.\n%\n%\nAnother.\n", encoding="utf-8")
    monkeypatch.setattr(corpus, "files", lambda package: tmp_path)
    with pytest.raises(HemorrhageError, match=r"prose\.txt: a snippet is empty"):
        corpus._read_domain("prose")
    (tmp_path / "data" / "corpus" / "prose.txt").write_text("One\n\nsnippet.\n%\nAnother.\n", encoding="utf-8")
    assert corpus._read_domain("prose") == ("One\n\nsnippet.", "Another.")
