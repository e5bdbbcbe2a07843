"""The README's newcomer walkthrough, run exactly as printed against `smsgw serve` and `smsgw sim-carrier`
on their default ports."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.e2e.procs import Procs

ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Try it", 1)[1]
    m = re.search(r"```bash\n(.*?)```", section, re.S)
    assert m, "no bash block under 'Try it'"
    return m.group(1)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_readme_walkthrough_works_as_printed(procs: Procs) -> None:
    assert port_free(8080) and port_free(8025), "the walkthrough needs 127.0.0.1:8080 and :8025 free"
    procs.start("sim", "sim-carrier", "--smpp-port", "0", port=8025)
    procs.start("gw", "serve", port=8080)
    script = walkthrough()
    # the README's `.venv/bin/smsgw` is this interpreter's smsgw when the suite runs from another venv
    script = script.replace(".venv/bin/smsgw", str(Path(sys.executable).parent / "smsgw"))
    r = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=procs.workdir,
        env=procs.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert '"status": "verified"' in r.stdout
    sent = re.search(r'^smsgw_otp_sent_total\{.*country="DE".*\} 1\.0$', r.stdout, re.M)
    verified = re.search(r'^smsgw_otp_verified_total\{.*country="DE".*\} 1\.0$', r.stdout, re.M)
    assert sent and verified, r.stdout
