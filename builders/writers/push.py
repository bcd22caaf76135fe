"""Upload a built dataset folder to the Hugging Face Hub, refusing folders that are not safe to publish.

The token comes from huggingface_hub's usual places (HF_TOKEN, `hf auth login`) and is never printed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq

from builders.errors import PushRefused

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
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not folder.is_dir():
        raise PushRefused(f"{folder} is not a folder; run `instructkit build` first")
    check_publishable(folder)
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset", revision=revision,
                               commit_message=f"instructkit: upload {folder.name}")
    return str(getattr(commit, "commit_url", None) or f"{api.endpoint}/datasets/{repo_id}")
