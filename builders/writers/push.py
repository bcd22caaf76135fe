"""Upload a built dataset folder to the Hugging Face Hub, refusing folders that are not safe to publish.

The token comes from huggingface_hub's usual places (HF_TOKEN, `hf auth login`) and is never printed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq

from builders.errors import InputError, PushRefused

PSEUDONYM = re.compile(r"^u_[0-9a-f]{16}$")


def check_publishable(folder: Path) -> dict:
    """The folder must be a built dataset whose report shows pseudonymised users and PII handled in every split
    it holds; the `user` column is checked row by row as well."""
    if not (folder / "README.md").exists():
        raise PushRefused(f"{folder} is not a built dataset folder (no README.md dataset card)")
    report_path = folder.parent / "build_report.json"
    if not report_path.exists():
        raise PushRefused(f"{report_path} not found: only folders made by `instructkit build` can be pushed")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    privacy = report.get("privacy", {})
    if privacy.get("user_ids") != "pseudonymised":
        raise PushRefused(f"{report_path} shows raw user ids; rebuild with instructkit build")
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise PushRefused(f"{folder} holds no parquet files")
    for f in files:
        split = f.name.split("-")[0]
        if privacy.get("pii", {}).get(split) == "not_scanned":
            raise PushRefused(f"{f.relative_to(folder)}: PII was not removed from the {split} split "
                              f"(built with --pii-scope train); rebuild with --pii-scope all to publish it")
        table = pq.read_table(f, columns=["user"]) if "user" in pq.read_schema(f).names else None
        if table is not None:
            for row, user in enumerate(table.column("user").to_pylist(), start=1):
                if user is not None and not PSEUDONYM.match(user):
                    raise PushRefused(f"{f}: row {row}: field 'user' is not a pseudonym; refusing to publish raw user ids")
    return report


def push(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None) -> str:
    """Upload `folder`; what a user can fix (a malformed repo id, no token, no network, a refused token) is a
    one-line error before or instead of a traceback."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise InputError(f"not a Hub repository id ORG/NAME ({exc})", flag="--repo-id") from None
    folder = Path(folder)
    if not folder.is_dir():
        raise PushRefused(f"{folder} is not a folder; run `instructkit build` first")
    check_publishable(folder)
    if get_token() is None:
        raise PushRefused("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a write token)")
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        commit = api.create_commit(repo_id, repo_type="dataset", revision=revision, operations=_files(folder, repo_id),
                                   commit_message=f"instructkit: upload {folder.name}")
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        raise PushRefused(f"the Hub at {api.endpoint} refused the upload to {repo_id} (HTTP {status}): "
                          + ("check that the token may write there" if status in (401, 403) else str(exc).splitlines()[0])) from None
    except Exception as exc:
        if not _unreachable(exc):
            raise
        raise PushRefused(f"cannot reach the Hub at {api.endpoint} ({type(exc).__name__}): check the network, or "
                          "HF_ENDPOINT") from None
    return str(getattr(commit, "commit_url", None) or f"{api.endpoint}/datasets/{repo_id}")


def _files(folder: Path, repo_id: str) -> list:
    """Every file of the folder as built, but the card's usage line names the Hub repository it now lives in."""
    from huggingface_hub import CommitOperationAdd

    from builders.writers.card import HUB_USAGE, LOCAL_USAGE, usage_line

    ops = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        content: str | bytes = str(path)
        if rel == "README.md":
            card = path.read_text(encoding="utf-8").replace(usage_line(folder.name), usage_line(repo_id), 1)
            content = card.replace(LOCAL_USAGE, HUB_USAGE, 1).encode("utf-8")
        ops.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=content))
    return ops


def _unreachable(exc: BaseException) -> bool:
    """A failed connection, as the socket layer or the Hub client's HTTP library (httpx / httpx2) raises it."""
    return isinstance(exc, OSError) or any(c.__name__ in ("TransportError", "NetworkError") for c in type(exc).__mro__)
