"""Generates docs/errors.md from the error table, so the document cannot drift from the code.

``python -m gateway.docs_gen`` rewrites it; a test checks the committed file is current."""

from __future__ import annotations

from pathlib import Path

from gateway.errors import ERROR_CODES


def errors_md() -> str:
    lines = [
        "# Error codes",
        "",
        'Every error answer has the shape `{"error": {"code", "message", ...details}}`. The code is',
        "stable and machine-readable; the message is for people and may change. Generated from",
        "`gateway/errors.py` by `python -m gateway.docs_gen`.",
        "",
        "| HTTP | code | meaning |",
        "| --- | --- | --- |",
    ]
    for code, (status, meaning) in sorted(ERROR_CODES.items(), key=lambda kv: (kv[1][0], kv[0])):
        lines.append(f"| {status} | `{code}` | {meaning} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    Path("docs/errors.md").write_text(errors_md())


if __name__ == "__main__":
    main()
