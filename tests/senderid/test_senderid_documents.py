"""Upload checks: type by magic bytes, name and declared type agree, size limit, clear codes."""

from __future__ import annotations

import hashlib

import pytest

from senderid.documents import (
    DOCUMENT_LABELS,
    FROM_REQUEST,
    FileKind,
    UploadPolicy,
    check_size,
    check_upload,
    sniff,
)
from senderid.errors import DocumentRejected
from senderid.rules import load_rules

PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\ntrailer\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 20
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20


@pytest.mark.parametrize(
    ("name", "content", "declared", "kind"),
    [
        ("licence.pdf", PDF, "application/pdf", FileKind.PDF),
        ("LICENCE.PDF", PDF, None, FileKind.PDF),
        ("logo.png", PNG, "image/png", FileKind.PNG),
        ("scan.jpg", JPEG, "image/jpeg; charset=binary", FileKind.JPEG),
        ("scan.jpeg", JPEG, None, FileKind.JPEG),
    ],
)
def test_accepted_uploads(name: str, content: bytes, declared: str | None, kind: FileKind) -> None:
    doc = check_upload("company_registration", name, content, declared_type=declared)
    assert (doc.kind, doc.filename, doc.size) == (kind, name, len(content))
    assert doc.sha256 == hashlib.sha256(content).hexdigest()
    assert doc.code == "company_registration"
    assert doc.content_type.startswith(("application/", "image/"))


@pytest.mark.parametrize(
    ("code", "name", "content", "declared", "error"),
    [
        ("loa", "a.pdf", b"", None, "document_empty"),
        ("loa", "a.pdf", b"MZ\x90\x00 this is an exe", None, "document_type_not_allowed"),
        ("loa", "a.pdf", b"<html><script>", None, "document_type_not_allowed"),
        ("loa", "a.gif", b"GIF89a....", None, "document_type_not_allowed"),
        ("loa", "evil.pdf", PNG, None, "document_type_mismatch"),
        ("loa", "noext", PDF, None, "document_type_mismatch"),
        ("loa", "a.pdf.exe", PDF, None, "document_type_mismatch"),
        ("loa", "a.pdf", PDF, "image/png", "document_type_mismatch"),
        ("loa", "../../etc/passwd.pdf", PDF, None, "document_name_invalid"),
        ("loa", "a\\b.pdf", PDF, None, "document_name_invalid"),
        ("loa", "a\x00.pdf", PDF, None, "document_name_invalid"),
        ("loa", "", PDF, None, "document_name_invalid"),
        ("loa", "x" * 201 + ".pdf", PDF, None, "document_name_invalid"),
        ("passport", "a.pdf", PDF, None, "document_code_unknown"),
    ],
)
def test_refused_uploads_say_why(
    code: str, name: str, content: bytes, declared: str | None, error: str
) -> None:
    with pytest.raises(DocumentRejected) as info:
        check_upload(code, name, content, declared_type=declared)
    assert info.value.code == error
    assert info.value.message


def test_size_limit_is_configurable_and_defaults_to_5_mib() -> None:
    assert UploadPolicy().max_bytes == 5 * 1024 * 1024
    big = PDF + b"\x00" * (5 * 1024 * 1024)
    with pytest.raises(DocumentRejected) as info:
        check_upload("loa", "big.pdf", big)
    assert info.value.code == "document_too_large"
    assert check_upload("loa", "big.pdf", big, policy=UploadPolicy(max_bytes=6 * 1024 * 1024)).size == len(
        big
    )
    with pytest.raises(DocumentRejected, match="limit is 10 bytes"):
        check_size(11, UploadPolicy(max_bytes=10))
    check_size(10, UploadPolicy(max_bytes=10))


def test_kinds_can_be_restricted() -> None:
    pdf_only = UploadPolicy(kinds=frozenset({FileKind.PDF}))
    with pytest.raises(DocumentRejected) as info:
        check_upload("loa", "a.png", PNG, policy=pdf_only)
    assert info.value.code == "document_type_not_allowed" and "PDF" in info.value.message


def test_sniff() -> None:
    assert [sniff(b) for b in (PDF, PNG, JPEG, b"", b"%PD")] == [
        FileKind.PDF,
        FileKind.PNG,
        FileKind.JPEG,
        None,
        None,
    ]


def test_vocabulary_covers_every_code_the_rules_name() -> None:
    book = load_rules()
    named = set().union(*(r.required_documents for r in book.countries.values()))
    assert named <= set(DOCUMENT_LABELS)
    assert set(DOCUMENT_LABELS) - named == set()  # no dead codes either
    assert set(DOCUMENT_LABELS) >= FROM_REQUEST
