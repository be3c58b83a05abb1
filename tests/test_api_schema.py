"""schemathesis against the commander API's own OpenAPI document: no 5xx, and every response
(status, content type, headers, body) matches what the document promises."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from api_support import console

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")  # fmt: skip


def test_the_api_keeps_its_openapi_promises(tmp_path: Path) -> None:
    with console(tmp_path) as c:
        # an incident to read and act on, so generated requests also meet a real one
        body = {"playbook": "gated-sms", "audience": "staff", "mode": "live"}
        answer = httpx.post(f"{c.url}/api/incidents", headers=c.auth("chief"), json=body)
        assert answer.status_code == 201, answer.text
        document = httpx.get(f"{c.url}/api/openapi.json").json()
        assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert "/incidents/{incident}/steps/{step}/approve" in document["paths"]
        command = shutil.which("schemathesis") or str(Path(sys.executable).parent / "st")
        run = subprocess.run(
            [command, "run", f"{c.url}/api/openapi.json", "--url", f"{c.url}/api",
             "--checks", CHECKS, "--max-examples", "30", "--seed", "11", "--workers", "1",
             "-H", f"Authorization: Bearer {c.tokens['chief']}", "--no-color"],
            capture_output=True, text=True, check=False, timeout=900,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""}, cwd=tmp_path,
        )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout or "passed" in run.stdout, run.stdout[-3000:]
