"""The built-in probe corpus: size, coverage of every tag, and snippet shape."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

from pytest_hemorrhage import corpus
from pytest_hemorrhage.corpus import BUILTIN_SNIPPETS, TAGS

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


def test_module_is_plain_data() -> None:
    tree = ast.parse(Path(corpus.__file__).read_text(encoding="utf-8"))
    assert ast.get_docstring(tree)
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imports)
