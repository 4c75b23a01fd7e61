"""The ``hemorrhage`` command: a CI gate without writing tests.

    hemorrhage snapshot MODEL_DIR --out FILE [--probes 64] [--max-length 128]
    hemorrhage compare BASELINE_DIR_OR_SNAPSHOT CANDIDATE_DIR [--max-kl 0.02] [--json r.json] [--junit r.xml] [--markdown r.md] [--html r.html]

Exit codes: 0 passed, 1 hemorrhage detected (or inconclusive, unless allowed), 2 usage or input error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import HemorrhageError
from .files import atomic_write_text
from .thresholds import Thresholds

EXIT_PASSED, EXIT_HEMORRHAGE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hemorrhage", description="Prove a modified model has not lost quality.")
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot", help="record a baseline snapshot of a model folder on the built-in probes")
    snap.add_argument("model", help="a Hugging Face model folder (save_pretrained output, with its tokenizer)")
    snap.add_argument("--out", required=True, metavar="FILE", help="snapshot file to write (.safetensors)")
    snap.add_argument("--probes", type=int, default=64, metavar="N", help="built-in probes to use (default 64)")
    snap.add_argument("--max-length", type=int, default=128, metavar="T", help="tokens per probe (default 128)")
    snap.add_argument("--batch-size", type=int, default=8, metavar="B")
    snap_progress = snap.add_mutually_exclusive_group()
    snap_progress.add_argument("--progress", dest="progress", action="store_true", default=None)
    snap_progress.add_argument("--no-progress", dest="progress", action="store_false")
    cmp_ = sub.add_parser("compare", help="compare a candidate model folder against a baseline model folder")
    cmp_.add_argument("baseline", help="baseline: a Hugging Face model folder, or a snapshot file")
    cmp_.add_argument("candidate", help="candidate: a Hugging Face model folder")
    cmp_.add_argument("--probes", type=int, default=64, metavar="N", help="built-in probes to use (default 64)")
    cmp_.add_argument("--max-length", type=int, default=128, metavar="T", help="tokens per probe (default 128)")
    cmp_.add_argument("--batch-size", type=int, default=8, metavar="B")
    cmp_.add_argument("--device", default=None, help="torch device (default: cpu)")
    cmp_.add_argument("--json", dest="json_path", metavar="PATH", help="write the JSON report here")
    cmp_.add_argument("--markdown", dest="markdown_path", metavar="PATH", help="write a Markdown summary here")
    cmp_.add_argument("--html", dest="html_path", metavar="PATH",
                      help="write a self-contained HTML report (tables and plots) here")
    cmp_.add_argument("--junit", dest="junit_path", metavar="PATH", help="write JUnit XML here")
    progress = cmp_.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show a progress bar (default: only on a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    for key in Thresholds.keys():
        cmp_.add_argument("--" + key.replace("_", "-"), dest=f"t_{key}", default=None, metavar="VALUE",
                          help=f"threshold {key} ('none' to stop gating it)")
    return parser


def _load_model_dir(path: str, role: str) -> Any:
    from transformers import AutoModelForCausalLM

    folder = Path(path)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise HemorrhageError(
            f"{role}: {path} is not a Hugging Face model folder (no config.json); save one with "
            "model.save_pretrained(folder)"
        )
    return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()


def _load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise HemorrhageError(
            f"baseline: no tokenizer in {path} ({exc.__class__.__name__}); save it beside the model "
            "with tokenizer.save_pretrained(folder)"
        ) from None


def junit_xml(reports: Sequence[Any], suite: str = "hemorrhage") -> str:
    """A JUnit XML document with one test case per report, metrics as properties."""
    import xml.etree.ElementTree as ET

    failures = sum(not r.passed for r in reports)
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(reports)), failures=str(failures), errors="0")
    for report in reports:
        case = ET.SubElement(ts, "testcase", classname=suite, name=report.name or "check")
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="verdict", value=report.verdict)
        for m in report.metrics.values():
            ET.SubElement(props, "property", name=m.name, value=f"{m.estimate:.6g}")
        if not report.passed:
            fail = ET.SubElement(case, "failure", message=report.headline())
            fail.text = report.to_text()
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def _compare(args: argparse.Namespace) -> int:
    from .comparison import compare
    from .probes import Probes

    values = {k: getattr(args, f"t_{k}") for k in Thresholds.keys() if getattr(args, f"t_{k}") is not None}
    thresholds = Thresholds.resolve(cli=values)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    if Path(args.baseline).is_file():
        from .snapshot import load_snapshot

        baseline = load_snapshot(args.baseline)
        probes = None  # the snapshot's own probes
    else:
        baseline = _load_model_dir(args.baseline, "baseline")
        tokenizer = _load_tokenizer(args.baseline)
        probes = Probes.builtin(tokenizer, n=args.probes, max_length=args.max_length)
    candidate = _load_model_dir(args.candidate, "candidate")
    report = compare(baseline, candidate, probes, thresholds=thresholds, batch_size=args.batch_size,
                     device=args.device, progress=progress, name=f"{args.candidate} vs {args.baseline}")
    print(report.to_text())
    if args.json_path:
        atomic_write_text(args.json_path, report.to_json())
    markdown = report.to_markdown()
    if args.markdown_path:
        atomic_write_text(args.markdown_path, markdown)
    if args.html_path:
        atomic_write_text(args.html_path, report.to_html())
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")
    if args.junit_path:
        atomic_write_text(args.junit_path, junit_xml([report]))
    return EXIT_PASSED if report.passed else EXIT_HEMORRHAGE


def _snapshot(args: argparse.Namespace) -> int:
    from .probes import Probes
    from .snapshot import record_snapshot

    model = _load_model_dir(args.model, "model")
    tokenizer = _load_tokenizer(args.model)
    probes = Probes.builtin(tokenizer, n=args.probes, max_length=args.max_length)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    snap = record_snapshot(model, probes, args.out, tokenizer=tokenizer, batch_size=args.batch_size,
                           progress=progress)
    size = Path(args.out).stat().st_size
    print(f"recorded {args.out}: {len(probes)} probes, {snap.n_scored_tokens} scored tokens, "
          f"{size} bytes ({snap.bytes_per_scored_token:.0f} bytes per scored token)")
    return EXIT_PASSED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hemorrhage`` console script."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors already; keep 0 for --help
        return int(exc.code or 0)
    try:
        if args.command == "compare":
            return _compare(args)
        if args.command == "snapshot":
            return _snapshot(args)
    except HemorrhageError as exc:  # InvalidArgument and SnapshotError included
        print(f"hemorrhage: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
