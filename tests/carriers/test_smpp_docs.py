"""docs/smpp.md is drawn from the code: the state diagram from TRANSITIONS, the table from STATUSES."""

from __future__ import annotations

from pathlib import Path

from carriers.smpp.pdu import STATUSES
from carriers.smpp.session import state_diagram

DOC = (Path(__file__).resolve().parents[2] / "docs" / "smpp.md").read_text(encoding="utf-8")


def test_state_diagram_matches_the_table() -> None:
    assert f"```mermaid\n{state_diagram()}```" in DOC


def test_status_table_matches_the_data() -> None:
    rows = [line for line in DOC.splitlines() if line.startswith("| 0x")]
    expected = [f"| 0x{c:02X} | {s.name} | {s.reason} | {s.retry.value} |" for c, s in STATUSES.items()]
    assert rows == expected
