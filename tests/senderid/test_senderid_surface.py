"""The public surface of ``senderid`` is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import senderid

EXPECTED = {
    "BASELINE_DOCUMENTS",
    "DOCUMENT_LABELS",
    "FROM_REQUEST",
    "TRANSITIONS",
    "Approval",
    "AuditEntry",
    "BrandClass",
    "BrandProfile",
    "BrandRule",
    "Change",
    "CheckedDocument",
    "Classification",
    "CountryRule",
    "DocumentRejected",
    "Event",
    "EventKind",
    "FileKind",
    "FormatIssue",
    "FormatResult",
    "IndexData",
    "IndexLoader",
    "InvalidTransition",
    "LeadTime",
    "LiveSenderIndex",
    "LocalFactor",
    "Presence",
    "Problem",
    "ReasonRequired",
    "Registration",
    "RequestInvalid",
    "Requirements",
    "RuleBook",
    "RulesError",
    "Segmentation",
    "SendDecision",
    "SenderIdError",
    "SenderIndex",
    "SenderKind",
    "State",
    "SubmitOutcome",
    "Support",
    "Target",
    "TargetStatus",
    "Template",
    "TemplateInvalid",
    "TemplateSet",
    "Tri",
    "UnknownTarget",
    "UploadPolicy",
    "add_documents",
    "approvals",
    "approve",
    "check_sender_format",
    "check_size",
    "check_upload",
    "classify",
    "expire",
    "expire_due",
    "load_rules",
    "match_template",
    "missing_documents",
    "open_request",
    "parse_profile",
    "reject",
    "resubmit",
    "submit",
    "transition",
}


def test_exported_members() -> None:
    assert set(senderid.__all__) == EXPECTED
    assert len(senderid.__all__) == len(EXPECTED)
    for name in senderid.__all__:
        assert getattr(senderid, name) is not None


def test_every_error_is_in_the_one_tree_with_a_code() -> None:
    errors = [
        senderid.RulesError,
        senderid.RequestInvalid,
        senderid.InvalidTransition,
        senderid.ReasonRequired,
        senderid.UnknownTarget,
        senderid.DocumentRejected,
        senderid.TemplateInvalid,
    ]
    assert all(issubclass(e, senderid.SenderIdError) for e in errors)
    assert len({e.code for e in errors if e is not senderid.DocumentRejected}) == len(errors) - 1
