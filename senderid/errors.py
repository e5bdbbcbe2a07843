"""The one error tree of the senderid package; the gateway translates it at the edge.

    SenderIdError(code, message)               every error carries a stable machine code
     ├── RulesError                             rule data or overrides are invalid (raised at start)
     │     .problems: tuple[Problem, ...]       every bad row and column at once
     ├── RequestInvalid                         a registration request cannot be filed
     │     .problems: tuple[Problem, ...]       e.g. a sender that a named country refuses
     ├── InvalidTransition                      the workflow table has no such move (HTTP 409)
     ├── ReasonRequired                         a rejection without a reason (HTTP 400)
     ├── UnknownTarget                          no such country/route on this registration (HTTP 404)
     ├── DocumentRejected                       an upload failed a size or type check (HTTP 400/413)
     └── TemplateInvalid                        a template cannot be compiled (HTTP 400)

Refusals that are normal answers rather than faults (a sender that is not registered, a format rule
that failed, documents that are missing) are returned as values: ``SendDecision``, ``FormatResult``,
``SubmitOutcome.refused``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input: where (``row`` in the file, 1 = header; ``column`` or key) and what."""

    where: str
    column: str
    message: str
    row: int | None = None

    def __str__(self) -> str:
        at = f"{self.where} row {self.row}" if self.row is not None else self.where
        return f"{at}, {self.column}: {self.message}"


class SenderIdError(Exception):
    """Root of the tree: ``code`` is a stable machine code, ``message`` a sentence for people."""

    code = "senderid_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class _WithProblems(SenderIdError):
    def __init__(self, problems: tuple[Problem, ...], *, what: str) -> None:
        lines = "\n  ".join(str(p) for p in problems)
        super().__init__(f"{len(problems)} problem(s) in {what}:\n  {lines}")
        self.problems = problems


class RulesError(_WithProblems):
    code = "rules_invalid"

    def __init__(self, problems: tuple[Problem, ...]) -> None:
        super().__init__(problems, what="sender-ID rule data")


class RequestInvalid(_WithProblems):
    code = "invalid_request"

    def __init__(self, problems: tuple[Problem, ...]) -> None:
        super().__init__(problems, what="the sender-ID request")


class InvalidTransition(SenderIdError):
    code = "invalid_transition"

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"a registration in state '{state}' cannot take event '{event}'")
        self.state = state
        self.event = event


class ReasonRequired(SenderIdError):
    code = "reason_required"

    def __init__(self) -> None:
        super().__init__("a rejection must say why (non-empty reason)")


class UnknownTarget(SenderIdError):
    code = "unknown_target"

    def __init__(self, country: str, route: str | None) -> None:
        where = country if route is None else f"{country} via route '{route}'"
        super().__init__(f"this registration does not cover {where}")
        self.country = country
        self.route = route


class DocumentRejected(SenderIdError):
    """``code`` is one of the ``document_*`` codes listed in :mod:`senderid.documents`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


class TemplateInvalid(SenderIdError):
    code = "template_invalid"
