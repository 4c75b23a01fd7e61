"""The ``hemorrhage`` command: a CI gate without writing tests.

    hemorrhage snapshot MODEL_DIR --out FILE [--probes 64] [--max-length 128]
    hemorrhage compare BASELINE_DIR_OR_SNAPSHOT CANDIDATE_DIR [--max-kl 0.02] [--no-suggest] [--allow-tokenizer-mismatch] [--json r.json] [--junit r.xml] [--markdown r.md] [--html r.html]
    hemorrhage sweep [MODEL_DIR] --modify sparsity --strengths 0.1,0.2,0.3 [--probes 32] [--json s.json] [--plot s.png] [--require 0.2]
    hemorrhage attribute BASELINE_DIR_OR_SNAPSHOT --runtime llama.cpp CANDIDATE_FILE [--reference UNQUANTISED_FILE] [--json a.json] [--markdown a.md]
    hemorrhage localise BASELINE_DIR CANDIDATE.gguf [--keep-from FINER.gguf] [--steps 1,2,4] [--bisect] [--out-dir DIR] [--json l.json] [--markdown l.md]

A failing ``compare`` explains itself as the library does: the vulnerability pattern and, against a
baseline model folder, the best mitigation tried on copies and re-measured (``--no-suggest`` skips
that for a faster answer). Every report file written is listed at the end.

``attribute`` splits a runtime candidate's divergence into a runtime part (the unquantised reference
in the same runtime against the baseline) and a compression part (the candidate against the reference);
``localise`` swaps a GGUF file's dequantised tensors into the baseline one block at a time and, with
``--keep-from``, re-makes the file with the costliest blocks from a finer file until the gate passes.

Exit codes: 0 passed, 1 hemorrhage detected (or inconclusive, unless allowed; for ``sweep``: the
``--require``d strength fails; for ``attribute``: the candidate fails; for ``localise --keep-from``:
no re-made file passes), 2 usage or input error.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from .errors import HemorrhageError, InvalidArgument
from .files import atomic_write_text
from .model_folder import check_model_folder, load_model, load_tokenizer
from .progress import ProgressLines
from .render.junit import junit_xml
from .render.text import thresholds_to_loosen
from .runtimes import RUNTIMES
from .sweep import MODIFY_SHORTCUTS
from .thresholds import Thresholds, option_name

EXIT_PASSED, EXIT_HEMORRHAGE, EXIT_USAGE = 0, 1, 2
_PROBES, _MAX_LENGTH = 64, 128  # the built-in probe set of ``snapshot`` and ``compare``


class _Parser(argparse.ArgumentParser):
    """An argument parser that remembers its option names, so that a misspelt one names its fix."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.option_names: list[str] = []  # before the base class adds --help
        super().__init__(*args, **kwargs)
        self.commands: dict[str, "_Parser"] = {}

    def add_argument(self, *names: Any, **kwargs: Any) -> Any:
        self.option_names.extend(n for n in names if isinstance(n, str) and n.startswith("-"))
        return super().add_argument(*names, **kwargs)

    def refuse_unknown(self, extras: Sequence[str]) -> None:
        """Exit 2 naming each unrecognized argument and, for an option, the closest known one."""
        named = []
        for extra in extras:
            option = extra.split("=", 1)[0]
            close = difflib.get_close_matches(option, self.option_names, n=1) if option.startswith("--") else []
            named.append(f"{extra} (did you mean {close[0]}?)" if close else extra)
        self.error(f"unrecognized arguments: {' '.join(named)}")


def _add_progress(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="show progress (default: only on a terminal)")
    group.add_argument("--no-progress", dest="progress", action="store_false")


def _add_probe_options(parser: argparse.ArgumentParser, default_n: int = _PROBES, snapshot_fixes: bool = False) -> None:
    """--probes, --max-length, --batch-size; with ``snapshot_fixes``, a snapshot baseline decides the defaults."""
    on_probes, on_length = ("; against a snapshot: the recorded ones, and N takes the first N of them",
                            "; against a snapshot: the recorded length, which T must equal") if snapshot_fixes else ("", "")
    parser.add_argument("--probes", type=int, default=None if snapshot_fixes else default_n, metavar="N",
                        help=f"built-in probes to use (default {default_n}{on_probes})")
    parser.add_argument("--max-length", type=int, default=None if snapshot_fixes else _MAX_LENGTH, metavar="T",
                        help=f"tokens per probe (default {_MAX_LENGTH}{on_length})")
    parser.add_argument("--batch-size", type=int, default=8, metavar="B")


def _add_threshold_options(parser: argparse.ArgumentParser) -> None:
    for key in Thresholds.keys():
        parser.add_argument(option_name(key, "--"), dest=f"t_{key}", default=None, metavar="VALUE",
                            help=f"threshold {key} ('none' to stop gating it)")


def _thresholds(args: argparse.Namespace) -> Thresholds:
    values = {k: getattr(args, f"t_{k}") for k in Thresholds.keys() if getattr(args, f"t_{k}") is not None}
    return Thresholds.resolve(cli=values, option_prefix="--")


def _strengths(text: str) -> list[float]:
    """``0.1,0.2,0.3`` -> floats; ``8,6,4`` -> ints (bisection then stays on whole numbers)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        return [int(p) for p in parts] if all(p.lstrip("-").isdigit() for p in parts) else [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers (e.g. 0.1,0.2,0.3 or 8,6,4)"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hemorrhage", description="Prove a modified model has not lost quality.")
    sub = parser.add_subparsers(dest="command", required=True)  # sub-commands are _Parser too
    snap = sub.add_parser("snapshot", help="record a baseline snapshot of a model folder on the built-in probes")
    snap.add_argument("model", help="a Hugging Face model folder (save_pretrained output, with its tokenizer)")
    snap.add_argument("--out", required=True, metavar="FILE", help="snapshot file to write (.safetensors)")
    _add_probe_options(snap)
    _add_progress(snap)
    cmp_ = sub.add_parser("compare", help="compare a candidate model folder against a baseline model folder")
    cmp_.add_argument("baseline", help="baseline: a Hugging Face model folder, or a snapshot file")
    cmp_.add_argument("candidate", help="candidate: a Hugging Face model folder; with --runtime, a GGUF or ONNX "
                                        "file, or a server's URL (http://host:port/v1)")
    cmp_.add_argument("--runtime", choices=sorted(RUNTIMES), default=None,
                      help="run the candidate in llama.cpp (a GGUF file), ONNX Runtime (an ONNX file) or an "
                           "OpenAI-compatible completions server (its URL, with --model)")
    cmp_.add_argument("--model", dest="server_model", default=None, metavar="NAME",
                      help="--runtime openai: the model name the server serves")
    cmp_.add_argument("--topk", type=int, default=None, metavar="K",
                      help="--runtime openai: log-probabilities asked for per token (default 20; servers cap it)")
    cmp_.add_argument("--tokenizer", default=None, metavar="DIR",
                      help="--runtime openai: the baseline's tokenizer (a folder holding it), which maps the "
                           "server's token strings back to ids; default: the baseline folder's")
    cmp_.add_argument("--api-key-env", default=None, metavar="VAR",
                      help="--runtime openai: environment variable holding the API key (default OPENAI_API_KEY); "
                           "the key is never printed or written")
    _add_probe_options(cmp_, snapshot_fixes=True)
    cmp_.add_argument("--allow-tokenizer-mismatch", action="store_true",
                      help="compare although the tokenizers of the baseline, candidate or probes differ "
                           "(a deliberate change of tokenizer); the report notes it")
    cmp_.add_argument("--device", default=None, help="torch device (default: cpu)")
    cmp_.add_argument("--no-suggest", dest="suggest", action="store_false",
                      help="on a failure, do not try mitigations on copies of the baseline (faster failures)")
    cmp_.add_argument("--json", dest="json_path", metavar="PATH", help="write the JSON report here")
    cmp_.add_argument("--markdown", dest="markdown_path", metavar="PATH", help="write a Markdown summary here")
    cmp_.add_argument("--html", dest="html_path", metavar="PATH",
                      help="write a self-contained HTML report (tables and plots) here")
    cmp_.add_argument("--junit", dest="junit_path", metavar="PATH", help="write JUnit XML here")
    _add_progress(cmp_)
    _add_threshold_options(cmp_)
    sw = sub.add_parser("sweep", help="sweep a modification's strength: phase transition and harshest passing strength")
    sw.add_argument("model", nargs="?", default=None,
                    help="a Hugging Face model folder with its tokenizer (default: the embedded SmolLM2-135M)")
    sw.add_argument("--modify", required=True, choices=sorted(MODIFY_SHORTCUTS),
                    help="magnitude-pruning sparsity, RTN per-channel bit width, or fraction of SVD rank removed")
    sw.add_argument("--strengths", required=True, type=_strengths, metavar="S1,S2,...",
                    help="sorted strengths, e.g. 0.1,0.2,0.3 or 8,6,4")
    sw.add_argument("--metric", choices=("kl", "top1", "ppl_ratio"), default="kl", help="metric to fit (default kl)")
    _add_probe_options(sw, default_n=32)
    sw.add_argument("--device", default=None, help="torch device (default: cpu)")
    sw.add_argument("--no-bisect", dest="bisect", action="store_false",
                    help="do not bisect between the last passing and the first failing strength")
    sw.add_argument("--tolerance", type=float, default=None, metavar="T",
                    help="bisection stops when the bracket is this narrow (default: 1/8 of the grid gap)")
    sw.add_argument("--require", type=float, default=None, metavar="STRENGTH",
                    help="exit 1 unless this strength still passes (a robustness gate)")
    sw.add_argument("--json", dest="json_path", metavar="PATH", help="write the sweep as JSON here")
    sw.add_argument("--plot", dest="plot_path", metavar="PATH", help="write the plot here (.png, .svg, .pdf)")
    _add_progress(sw)
    _add_threshold_options(sw)
    parser.commands = {"snapshot": snap, "compare": cmp_, "sweep": sw, **_add_diagnosis_parsers(sub)}
    return parser


def _add_report_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", dest="json_path", metavar="PATH", help="write the JSON result here")
    parser.add_argument("--markdown", dest="markdown_path", metavar="PATH", help="write a Markdown table here")


def _add_diagnosis_parsers(sub: Any) -> dict[str, Any]:
    """``attribute`` and ``localise``: why a runtime candidate fails."""
    attr = sub.add_parser("attribute", help="split a runtime candidate's divergence into a runtime part and a "
                                            "compression part")
    attr.add_argument("baseline", help="baseline: a Hugging Face model folder, or a snapshot file")
    attr.add_argument("candidate", help="the quantised file (GGUF with --runtime llama.cpp, ONNX with --runtime onnx)")
    attr.add_argument("--runtime", choices=[name for name in sorted(RUNTIMES) if name != "openai"], required=True,
                      help="the runtime both files run in")
    attr.add_argument("--reference", default=None, metavar="FILE",
                      help="the same weights unquantised, in the same runtime (an F32 or F16 GGUF, an fp32 ONNX "
                           "export); default for a GGUF candidate against a baseline folder: an F32 GGUF written "
                           "from the baseline's weights in the candidate's layout")
    _add_probe_options(attr, snapshot_fixes=True)
    _add_report_files(attr)
    _add_progress(attr)
    _add_threshold_options(attr)
    loc = sub.add_parser("localise", help="measure what each block of a GGUF file costs, swapped alone into the "
                                          "baseline; optionally re-make the file with the costliest blocks finer")
    loc.add_argument("baseline", help="the Hugging Face model folder the GGUF file was converted from")
    loc.add_argument("candidate", help="the GGUF file")
    loc.add_argument("--keep-from", default=None, metavar="FILE",
                     help="the same model as a finer GGUF (Q8_0, F16, F32): re-make the candidate with its costliest "
                          "blocks taken from it and gate each file in llama.cpp, until one passes")
    loc.add_argument("--steps", type=_strengths, default=[1, 2, 4], metavar="K,K,...",
                     help="--keep-from: how many blocks to keep at each attempt (default 1,2,4)")
    loc.add_argument("--bisect", action="store_true",
                     help="--keep-from: after the first passing step, halve the gap to the last failing one until "
                          "the count that passes is one more than a count that fails")
    loc.add_argument("--out-dir", default=None, metavar="DIR",
                     help="--keep-from: where the re-made files go (default: a new temporary folder)")
    loc.add_argument("--threads", type=int, default=None, metavar="N", help="--keep-from: llama.cpp's threads")
    _add_probe_options(loc)
    _add_report_files(loc)
    _add_progress(loc)
    _add_threshold_options(loc)
    return {"attribute": attr, "localise": loc}


def _runtime_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The options to open ``--runtime`` with (None without one), checked before anything loads:
    the server's flags belong to ``--runtime openai`` alone."""
    server_options = {"model": args.server_model, "topk": args.topk, "api_key_env": args.api_key_env,
                      "tokenizer": args.tokenizer}
    given = {name: value for name, value in server_options.items() if value is not None}
    if args.runtime is None or args.runtime != "openai":
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            which = f"--runtime {args.runtime} runs a file" if args.runtime else "the candidate is a model folder"
            raise InvalidArgument(f"{flags}: only for --runtime openai (a server); {which}")
        return None if args.runtime is None else {}
    if args.tokenizer is None and Path(args.baseline).is_file():
        raise InvalidArgument("--runtime openai against a snapshot needs --tokenizer DIR, a folder holding the "
                              "baseline's tokenizer: the server answers with token strings, mapped back to ids with it")
    return given


def _check_compare_paths(baseline: str, candidate: str, runtime: str | None = None) -> None:
    """Refuse missing paths and arguments in the wrong order before any weights load."""
    if not Path(baseline).exists():
        raise HemorrhageError(
            f"baseline: {baseline} does not exist; give a snapshot file (hemorrhage snapshot ... --out FILE) "
            "or a Hugging Face model folder"
        )
    if runtime is not None:
        if Path(baseline).is_dir():
            check_model_folder(baseline, "baseline")
        if runtime != "openai" and not Path(candidate).is_file():
            kind = "GGUF" if runtime == "llama.cpp" else "ONNX"
            raise HemorrhageError(f"candidate: {candidate} is not a file; --runtime {runtime} runs a {kind} file")
        return
    if Path(candidate).is_file():
        order = "hemorrhage compare SNAPSHOT_OR_BASELINE CANDIDATE"
        if Path(baseline).is_dir():
            raise HemorrhageError(
                f"the arguments are in the wrong order: the candidate {candidate} is a file (a snapshot) and "
                f"the baseline {baseline} a folder; the snapshot or baseline comes first ({order}): "
                f"hemorrhage compare {candidate} {baseline}"
            )
        raise HemorrhageError(
            f"candidate: {candidate} is a file; the candidate is a Hugging Face model folder ({order})"
        )
    check_model_folder(candidate, "candidate")
    if Path(baseline).is_dir():
        check_model_folder(baseline, "baseline")


def _model_with_tokenizer(path: str, role: str) -> tuple[Any, Any]:
    """The model and tokenizer in ``path``; the command builds its probes with the tokenizer, so one is required."""
    model, tokenizer = load_model(path, role)
    if tokenizer is None:
        load_tokenizer(path, role)  # raises, naming the cause and the fix
    return model, tokenizer


def _snapshot_probes(snapshot: Any, args: argparse.Namespace) -> Any:
    """The probes to compare on against a snapshot: the recorded ones, the first ``--probes`` N of them.

    A snapshot fixes its probes: ``--max-length`` other than the recorded length, or more probes
    than were recorded, cannot apply and are refused.
    """
    recorded = snapshot.probes
    if args.max_length is not None:
        found = re.search(r"max_length=(\d+)", recorded.name)
        if found is None or int(found.group(1)) != args.max_length:
            length = f"max_length={found.group(1)}" if found else f"probes {recorded.name!r}"
            raise HemorrhageError(
                f"--max-length {args.max_length}: the snapshot {args.baseline} fixes its probes ({length}); "
                f"drop --max-length, or record a snapshot with it: hemorrhage snapshot BASELINE_MODEL_DIR "
                f"--max-length {args.max_length} --out FILE"
            )
    if args.probes is None or args.probes == len(recorded):
        return None  # the snapshot's own probes
    if not 1 <= args.probes < len(recorded):
        raise HemorrhageError(
            f"--probes {args.probes}: the snapshot {args.baseline} holds {len(recorded)} probes; pass --probes "
            f"1 to {len(recorded)} (the first N are used), or record a snapshot with more: hemorrhage snapshot "
            f"BASELINE_MODEL_DIR --probes {args.probes} --out FILE"
        )
    return recorded.subset(range(args.probes))


def _accept_advice(report: Any, snapshot: str | None) -> list[str]:
    """How a command-line user accepts a failing comparison on purpose."""
    options = " ".join(f"{option_name(key, '--')} VALUE" for key in thresholds_to_loosen(report))
    advice = [f"pass a looser threshold ({options})"] if options else []
    if snapshot is not None:
        advice.append(f"record the baseline snapshot again: hemorrhage snapshot BASELINE_MODEL_DIR --out {snapshot}")
    return advice


class _Written:
    """Report files as they are written, listed at the end of the output."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def text(self, path: str | None, text: str, what: str) -> None:
        if path:
            atomic_write_text(path, text)
            self.lines.append(f"wrote {what}: {path}")

    def show(self) -> None:
        for line in self.lines:
            print(line)


def _compare(args: argparse.Namespace) -> int:
    from .check import run_check

    thresholds = _thresholds(args)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    runtime_options = _runtime_options(args)
    _check_compare_paths(args.baseline, args.candidate, args.runtime)
    baseline, probes, tokenizer = _baseline_and_probes(args)
    snapshot = args.baseline if tokenizer is None else None
    if runtime_options is not None:
        from .runtimes import open_runtime

        if args.runtime == "openai" and "tokenizer" not in runtime_options:
            runtime_options["tokenizer"] = tokenizer  # the baseline folder's
        candidate = open_runtime(args.runtime, args.candidate, **runtime_options)
    else:
        candidate, candidate_tokenizer = load_model(args.candidate, "candidate")
    if args.runtime is None and candidate_tokenizer is None:
        print(f"hemorrhage: warning: the candidate folder {args.candidate} holds no tokenizer, so it was not "
              "checked against the baseline's; save it there with tokenizer.save_pretrained(folder)", file=sys.stderr)
    # The bar shows the probes; the lines say what the comparison and each mitigation took.
    on_progress = ProgressLines(lambda line: print(line, file=sys.stderr, flush=True)) if progress else None
    with warnings.catch_warnings():  # an allowed tokenizer mismatch is a note of the report printed below
        warnings.filterwarnings("ignore", message=r"allowed \(allow_tokenizer_mismatch=True\)")
        report = run_check(baseline, candidate, probes, thresholds=thresholds, suggest=args.suggest,
                           batch_size=args.batch_size, device=args.device, progress=progress,
                           on_progress=on_progress, name=f"{args.candidate} vs {args.baseline}",
                           allow_tokenizer_mismatch=args.allow_tokenizer_mismatch)
    advice = _accept_advice(report, snapshot)
    print(report.to_text(advice))
    written = _Written()
    written.text(args.json_path, report.to_json(), "JSON report")
    markdown = report.to_markdown()
    written.text(args.markdown_path, markdown, "Markdown summary")
    if args.html_path:  # plots take a moment: only when asked for
        written.text(args.html_path, report.to_html(), "HTML report")
    written.text(args.junit_path, junit_xml([report], advice=lambda r: advice), "JUnit XML")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")
        written.lines.append(f"added the Markdown summary to $GITHUB_STEP_SUMMARY: {summary}")
    written.show()
    return EXIT_PASSED if report.passed else EXIT_HEMORRHAGE


def _baseline_and_probes(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(baseline, probes, tokenizer)`` the command measures with: a snapshot file's (probes None for all
    of its recorded ones, tokenizer None), or a model folder's with the built-in probes."""
    from .probes import Probes

    if not Path(args.baseline).exists():
        raise HemorrhageError(f"baseline: {args.baseline} does not exist; give a Hugging Face model folder"
                              f"{'' if args.command == 'localise' else ' or a snapshot file'}")
    if Path(args.baseline).is_file():
        if args.command == "localise":
            raise HemorrhageError(f"baseline: {args.baseline} is a file; localise swaps weights into the baseline, "
                                  "so it needs the Hugging Face model folder the GGUF file was converted from")
        from .snapshot import load_snapshot

        snapshot = load_snapshot(args.baseline)
        return snapshot, _snapshot_probes(snapshot, args), None
    check_model_folder(args.baseline, "baseline")
    model, tokenizer = _model_with_tokenizer(args.baseline, "baseline")
    probes = Probes.builtin(tokenizer, n=_PROBES if args.probes is None else args.probes,
                            max_length=_MAX_LENGTH if args.max_length is None else args.max_length)
    return model, probes, tokenizer


def _existing_file(path: str, what: str) -> str:
    if not Path(path).is_file():
        raise HemorrhageError(f"{what}: {path} is not a file")
    return path


def _attribute(args: argparse.Namespace) -> int:
    from .attribution import attribute
    from .runtimes import open_runtime

    thresholds = _thresholds(args)
    candidate = open_runtime(args.runtime, _existing_file(args.candidate, "candidate"))
    reference = None if args.reference is None else open_runtime(
        args.runtime, _existing_file(args.reference, "--reference"), role="reference")
    baseline, probes, _ = _baseline_and_probes(args)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    found = attribute(baseline, candidate, reference, probes, thresholds, batch_size=args.batch_size,
                      progress=progress)
    print(found.to_text())
    written = _Written()
    written.text(args.json_path, json.dumps(found.to_dict(), indent=2), "JSON attribution")
    written.text(args.markdown_path, found.to_markdown(), "Markdown table")
    written.show()
    return EXIT_PASSED if found.reports["total"].passed else EXIT_HEMORRHAGE


def _localise(args: argparse.Namespace) -> int:
    from .localise import localise

    thresholds = _thresholds(args)
    _existing_file(args.candidate, "candidate")
    if args.keep_from is not None:
        _existing_file(args.keep_from, "--keep-from")
    baseline, probes, _ = _baseline_and_probes(args)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    found = localise(baseline, args.candidate, probes, thresholds, batch_size=args.batch_size, progress=progress)
    fixed = None
    if args.keep_from is not None:
        fixed = found.verify(args.keep_from, steps=args.steps, bisect=args.bisect, folder=args.out_dir,
                             n_threads=args.threads)
    print(found.to_text())
    if fixed is not None:
        print(f"passes with {', '.join(fixed.kept)} kept from {args.keep_from}: {fixed.path}")
    written = _Written()
    written.text(args.json_path, json.dumps(found.to_dict(), indent=2), "JSON localisation")
    written.text(args.markdown_path, found.to_markdown(), "Markdown table")
    written.show()
    return EXIT_HEMORRHAGE if args.keep_from is not None and fixed is None else EXIT_PASSED


def _snapshot(args: argparse.Namespace) -> int:
    from .probes import Probes
    from .snapshot import record_snapshot

    model, tokenizer = _model_with_tokenizer(args.model, "model")
    probes = Probes.builtin(tokenizer, n=args.probes, max_length=args.max_length)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    snap = record_snapshot(model, probes, args.out, tokenizer=tokenizer, batch_size=args.batch_size,
                           progress=progress)
    size = Path(args.out).stat().st_size
    print(f"recorded {args.out}: {len(probes)} probes, {snap.n_scored_tokens} scored tokens, "
          f"{size} bytes ({snap.bytes_per_scored_token:.0f} bytes per scored token)")
    return EXIT_PASSED


def _sweep(args: argparse.Namespace) -> int:
    from .probes import Probes
    from .sweep import plot_format, sweep

    thresholds = _thresholds(args)
    if args.plot_path:
        plot_format(args.plot_path)  # a bad suffix fails now, not after the sweep
    if args.model is None:
        from .models import default_model

        model, tokenizer = default_model()
    else:
        model, tokenizer = _model_with_tokenizer(args.model, "model")
    probes = Probes.builtin(tokenizer, n=args.probes, max_length=args.max_length)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = sweep(model, args.modify, args.strengths, probes, thresholds, metric=args.metric, bisect=args.bisect,
                   tolerance=args.tolerance, progress=progress, batch_size=args.batch_size, device=args.device)
    print(result.summary())
    written = _Written()
    written.text(args.json_path, result.to_json(), "JSON sweep")
    if args.plot_path:
        result.plot(args.plot_path)
        written.lines.append(f"wrote plot: {args.plot_path}")
    written.show()
    if args.require is not None and not result.survives(args.require):
        passing = "none" if result.harshest_passing is None else f"{result.harshest_passing:g}"
        print(f"hemorrhage: required {args.modify} {args.require:g} fails (harshest passing: {passing})",
              file=sys.stderr)
        return EXIT_HEMORRHAGE
    return EXIT_PASSED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hemorrhage`` console script."""
    parser = _parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            parser.commands[args.command].refuse_unknown(extras)
    except SystemExit as exc:  # argparse exits 2 on usage errors already; keep 0 for --help
        return int(exc.code or 0)
    try:
        if args.command == "compare":
            return _compare(args)
        if args.command == "snapshot":
            return _snapshot(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "attribute":
            return _attribute(args)
        if args.command == "localise":
            return _localise(args)
    except HemorrhageError as exc:  # InvalidArgument and SnapshotError included
        print(f"hemorrhage: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
