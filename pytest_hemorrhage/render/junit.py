"""JUnit: one property schema for every front end, and the command line's JUnit XML file.

A check's properties are ``hemorrhage_verdict``, ``hemorrhage_<metric>`` (each estimate),
``hemorrhage_<metric>_ci_high`` / ``_ci_low`` (the bound on the harmful side of each gated metric)
and ``hemorrhage_first_bad_layer``. The second check of one test uses the prefix
``hemorrhage[1]``, and so on. The plugin adds them to the test case's ``user_properties`` (pytest's
``--junitxml``); ``hemorrhage compare --junit`` writes the same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from .text import headline, render_text

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report

__all__ = ["properties", "junit_xml"]


def properties(report: "Report", index: int = 0) -> list[tuple[str, str]]:
    """The JUnit properties of the ``index``-th check of a test case."""
    prefix = "hemorrhage" if index == 0 else f"hemorrhage[{index}]"
    props = [(f"{prefix}_verdict", report.verdict)]
    for m in report.metrics.values():
        props.append((f"{prefix}_{m.name}", f"{m.estimate:.6g}"))
        if m.verdict != "info":
            side, bound = ("ci_high", m.ci_high) if m.direction == "max" else ("ci_low", m.ci_low)
            props.append((f"{prefix}_{m.name}_{side}", f"{bound:.6g}"))
    first = report.first_bad_layer
    if first is not None:
        props.append((f"{prefix}_first_bad_layer", first.name))
    return props


def junit_xml(reports: Sequence["Report"], suite: str = "hemorrhage",
              advice: Callable[["Report"], Sequence[str]] = lambda report: ()) -> str:
    """A JUnit XML document, one test case per report; a failing one carries its message.

    ``advice(report)``: the caller's ways to accept a failure on purpose (see :func:`render_text`).
    """
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites")
    failures = sum(not r.passed for r in reports)
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(reports)), failures=str(failures), errors="0")
    for report in reports:
        case = ET.SubElement(ts, "testcase", classname=suite, name=report.name or "check")
        props = ET.SubElement(case, "properties")
        for name, value in properties(report):
            ET.SubElement(props, "property", name=name, value=value)
        if not report.passed:
            failure = ET.SubElement(case, "failure", message=headline(report))
            failure.text = render_text(report, advice(report))
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
