"""T18: schemathesis against the edge API, as ``tests/edge_agent/api/test_openapi_conformance.py``
runs it in the test suite (requests generated from OpenAI's own description, every answer checked
for server errors and schema conformance). The bench runs that module and reports its outcome;
where the source tree (and so the test) is not there, the scenario says so and fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from shared.paths import REPO_ROOT
from shared.reliability import Report, Result, Size

NAME = "schemathesis on the edge API"
TEST = Path("tests/edge_agent/api/test_openapi_conformance.py")


def t18_schemathesis(size: Size, work: Path) -> Result:
    r = Report("T18", NAME)
    if not (REPO_ROOT / TEST).is_file():
        r.require(False, f"{TEST} is not in this installation")
        return r.result()
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEST)]
    try:
        done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, check=False)
        out = done.stdout + done.stderr
        code = done.returncode
    except subprocess.TimeoutExpired:
        out, code = "timed out after 1800 s", -1
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error|errors|skipped)", out)}
    r.figure(
        test_cases=counts.get("passed", 0) + counts.get("failed", 0),
        passed=counts.get("passed", 0),
        failed=counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0),
        exit_code=code,
    )
    r.require(
        code == 0,
        "schemathesis found failures: " + out.strip().splitlines()[-1] if out.strip() else "no output",
    )
    return r.result()
