"""Built-in probe corpus: short, fluent English snippets tagged by domain.

Every snippet was written for pytest-hemorrhage. They are deliberately plain
and predictable, so that a healthy small language model assigns them low
perplexity and damage to the model shows up clearly. ``BUILTIN_SNIPPETS``
holds ``(tag, text)`` pairs; ``TAGS`` lists the tags in a fixed order.

The texts are package data: ``data/corpus/<tag>.txt`` holds one domain, its
snippets separated by a line holding only ``%``. Their order (tags in ``TAGS``
order, snippets in file order) decides which probes ``Probes.builtin`` draws
for a seed, and so the fingerprints stored in recorded snapshots: append new
snippets at the end of a file rather than inserting them.
"""

from __future__ import annotations

from importlib.resources import files

from .errors import HemorrhageError

__all__ = ["TAGS", "BUILTIN_SNIPPETS", "SEPARATOR"]

TAGS: tuple[str, ...] = (
    "prose",
    "news",
    "dialogue",
    "code",
    "math",
    "list",
    "instructions",
    "science",
    "qa",
)

SEPARATOR = "%"
"""The line that ends one snippet and starts the next inside a domain's file."""


def _read_domain(tag: str) -> tuple[str, ...]:
    resource = files(__package__) / "data" / "corpus" / f"{tag}.txt"
    lines = resource.read_text(encoding="utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()  # the file's final newline ends the last snippet; it is not part of it
    snippets: list[list[str]] = [[]]
    for line in lines:
        if line == SEPARATOR:
            snippets.append([])
        else:
            snippets[-1].append(line)
    texts = tuple("\n".join(snippet) for snippet in snippets)
    if not all(text.strip() for text in texts):
        raise HemorrhageError(
            f"{resource}: a snippet is empty; remove the doubled or trailing {SEPARATOR!r} line"
        )
    return texts


BUILTIN_SNIPPETS: tuple[tuple[str, str], ...] = tuple(
    (tag, text) for tag in TAGS for text in _read_domain(tag)
)
