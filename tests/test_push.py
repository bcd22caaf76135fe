"""`instructkit push` through huggingface_hub's real request code, against a local server that records commits."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TOKEN = "hf_test_token_must_never_be_printed"


class FakeHub(BaseHTTPRequestHandler):
    calls: list = []
    files: dict = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        FakeHub.calls.append(("POST", self.path, self.headers.get("Authorization")))
        if self.path == "/api/repos/create":
            req = json.loads(body)
            FakeHub.created = req
            return self._send(200, {"url": f"http://{self.headers['Host']}/datasets/{req.get('organization')}/{req['name']}"})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if "/commit/" in self.path:
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    FakeHub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            repo = self.path.split("/api/datasets/")[1].split("/commit/")[0]
            return self._send(200, {"commitUrl": f"http://{self.headers['Host']}/datasets/{repo}/commit/{'a' * 40}", "commitOid": "a" * 40})
        if self.path == "/api/validate-yaml":  # the Hub checks the card's metadata; check what users rely on
            from huggingface_hub import DatasetCard

            meta = DatasetCard(json.loads(body)["content"]).data.to_dict()
            missing = [k for k in ("configs", "dataset_info", "license") if k not in meta]
            FakeHub.validated = meta
            return self._send(400 if missing else 200, {"errors": [{"message": f"missing {k}"} for k in missing], "warnings": []})
        if "/branch/" in self.path:
            return self._send(200, {})
        return self._send(404, {"error": f"not faked: {self.path}"})

    def do_GET(self):
        FakeHub.calls.append(("GET", self.path, self.headers.get("Authorization")))
        return self._send(404, {"error": f"not faked: {self.path}"})


@pytest.fixture
def hub():
    FakeHub.calls, FakeHub.files = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run_push(hub_url, *args):
    env = {**os.environ, "HF_ENDPOINT": hub_url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}
    return subprocess.run([sys.executable, "-m", "instructkit", "push", *args], env=env, capture_output=True, text=True, timeout=300)


def test_push_uploads_the_folder_as_built_and_never_prints_the_token(sample_build, hub):
    out, _ = sample_build
    res = run_push(hub, "rm", "--out", str(out), "--repo-id", "acme/prompts-rm", "--private")
    assert res.returncode == 0, res.stderr
    local = {str(p.relative_to(out / "rm")): p.read_bytes() for p in (out / "rm").rglob("*") if p.is_file()}
    card = local.pop("README.md").decode()
    assert 'From the build\'s output folder (`--out`, default `builders`):' in card and 'load_dataset("rm", "rankings")' in card
    pushed = card.replace('load_dataset("rm"', 'load_dataset("acme/prompts-rm"').replace(
        "From the build's output folder (`--out`, default `builders`):", "From the Hugging Face Hub:")
    assert FakeHub.files.pop("README.md").decode() == pushed
    assert FakeHub.files == local
    assert FakeHub.created.get("visibility") == "private" or FakeHub.created.get("private") is True, FakeHub.created
    assert any(auth == f"Bearer {TOKEN}" for _, path, auth in FakeHub.calls if "/commit/" in path)
    assert TOKEN not in res.stdout + res.stderr


def test_push_to_a_branch_creates_it(sample_build, hub):
    out, _ = sample_build
    res = run_push(hub, "ppo", "--out", str(out), "--repo-id", "acme/prompts-ppo", "--revision", "v1")
    assert res.returncode == 0, res.stderr
    assert any("/branch/v1" in path for _, path, _ in FakeHub.calls)
    assert any(path.endswith("/commit/v1") for _, path, _ in FakeHub.calls)


def test_push_refuses_splits_left_with_pii(sample_build, hub, tmp_path):
    out, _ = sample_build
    copy = tmp_path / "b"
    shutil.copytree(out, copy)
    report = json.loads((copy / "build_report.json").read_text())
    report["privacy"]["pii"]["test"] = "not_scanned"
    (copy / "build_report.json").write_text(json.dumps(report))
    res = run_push(hub, "sft", "--out", str(copy), "--repo-id", "acme/x")
    assert res.returncode == 2 and "PII was not removed from the test split" in res.stderr
    assert not FakeHub.calls


def test_push_refuses_raw_user_ids(sample_build, hub, tmp_path):
    import polars as pl

    out, _ = sample_build
    copy = tmp_path / "b"
    shutil.copytree(out, copy)
    f = next((copy / "ppo" / "data").glob("train-*.parquet"))
    pl.read_parquet(f).with_columns(pl.lit("alice@example.com").alias("user")).write_parquet(f)
    res = run_push(hub, "ppo", "--out", str(copy), "--repo-id", "acme/x")
    assert res.returncode == 2 and "row 1: field 'user' is not a pseudonym" in res.stderr
    assert not FakeHub.calls
