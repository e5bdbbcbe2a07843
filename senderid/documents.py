"""Documents: the vocabulary of required-document codes, and the checks an upload must pass.

Document codes are the ones used in ``data/senderid_countries.csv`` (column ``documents_required``).
Some are satisfied by the request itself rather than by an uploaded file (:data:`FROM_REQUEST`): the
request names the sender, states the use case and carries sample templates.

Uploads are accepted as PDF, PNG or JPEG only, recognised by their first bytes (magic numbers), never by
their name alone; a name or declared content type that disagrees with the bytes is refused too. Error
codes (``DocumentRejected.code``):

| code | meaning | suggested HTTP status |
| --- | --- | --- |
| ``document_empty`` | the file has no bytes | 400 |
| ``document_too_large`` | larger than the configured limit (default 5 MiB) | 413 |
| ``document_type_not_allowed`` | the bytes are not PDF, PNG or JPEG (or that type is disabled) | 415 |
| ``document_type_mismatch`` | file name extension or declared type says another type than the bytes | 415 |
| ``document_name_invalid`` | empty, too long, or holds path separators or control characters | 400 |
| ``document_code_unknown`` | the document code is not in :data:`DOCUMENT_LABELS` | 400 |
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from senderid.errors import DocumentRejected

DOCUMENT_LABELS: dict[str, str] = {
    "sender_id": "the sender ID to register",
    "company_registration": "company registration certificate (business licence)",
    "tax_id": "tax registration (e.g. NPWP, PAN, EIN)",
    "local_business_id": "local business identifier (e.g. ABN, UEN)",
    "local_entity_proof": "proof of a local legal entity",
    "loa": "letter of authorization (LOA)",
    "noc": "no-objection certificate (NOC)",
    "signatory_id": "identity document of the authorised signatory",
    "company_stamp": "company stamp on the signed documents",
    "brand_ownership_proof": "proof of brand ownership (e.g. trademark)",
    "industry_license": "industry licence from the sector regulator",
    "website": "company website",
    "sample_content": "sample message content",
    "use_case": "use case description",
    "template_registration": "message templates to register",
    "dlt_registration": "DLT principal-entity registration (India)",
    "url_allowlist": "list of URLs the messages will contain",
    "opt_in_proof": "proof of how recipients opted in",
    "opt_out_url": "opt-out URL",
    "terms_url": "terms of service URL",
    "monthly_volume_estimate": "estimated monthly volume",
}
"""Every document code the rules may name, with the label shown to people."""

FROM_REQUEST: frozenset[str] = frozenset({"sender_id", "use_case", "sample_content", "template_registration"})
"""Codes satisfied by fields of the registration request rather than by an uploaded file."""

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
MAX_NAME_LENGTH = 200


def label(code: str) -> str:
    """Human label of a document code (the code itself when unknown)."""
    return DOCUMENT_LABELS.get(code, code)


def unknown_codes(codes: Iterable[str]) -> list[str]:
    """The codes that are not in the vocabulary, sorted."""
    return sorted({c for c in codes if c not in DOCUMENT_LABELS})


class FileKind(enum.StrEnum):
    PDF = "pdf"
    PNG = "png"
    JPEG = "jpeg"


_MAGIC: tuple[tuple[bytes, FileKind], ...] = (
    (b"%PDF-", FileKind.PDF),
    (b"\x89PNG\r\n\x1a\n", FileKind.PNG),
    (b"\xff\xd8\xff", FileKind.JPEG),
)
_EXTENSIONS: dict[str, FileKind] = {
    "pdf": FileKind.PDF,
    "png": FileKind.PNG,
    "jpg": FileKind.JPEG,
    "jpeg": FileKind.JPEG,
}
_CONTENT_TYPES: dict[str, FileKind] = {
    "application/pdf": FileKind.PDF,
    "image/png": FileKind.PNG,
    "image/jpeg": FileKind.JPEG,
    "image/jpg": FileKind.JPEG,
}
CONTENT_TYPE_OF: dict[FileKind, str] = {
    FileKind.PDF: "application/pdf",
    FileKind.PNG: "image/png",
    FileKind.JPEG: "image/jpeg",
}


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    """What an upload may be: the size limit and the accepted kinds (configurable)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    kinds: frozenset[FileKind] = field(default_factory=lambda: frozenset(FileKind))


@dataclass(frozen=True, slots=True)
class CheckedDocument:
    """An upload that passed: its code, kind (from its bytes), safe name, size and SHA-256."""

    code: str
    kind: FileKind
    filename: str
    size: int
    sha256: str

    @property
    def content_type(self) -> str:
        return CONTENT_TYPE_OF[self.kind]


def sniff(content: bytes) -> FileKind | None:
    """The kind of file the bytes start like, or None."""
    for magic, kind in _MAGIC:
        if content.startswith(magic):
            return kind
    return None


def check_size(size: int, policy: UploadPolicy = UploadPolicy()) -> None:
    """Refuse by size alone, e.g. from ``Content-Length`` before reading the body."""
    if size <= 0:
        raise DocumentRejected("document_empty", "the uploaded file is empty")
    if size > policy.max_bytes:
        raise DocumentRejected(
            "document_too_large",
            f"the uploaded file has {size} bytes; the limit is {policy.max_bytes} bytes",
        )


def check_upload(
    code: str,
    filename: str,
    content: bytes,
    *,
    declared_type: str | None = None,
    policy: UploadPolicy = UploadPolicy(),
) -> CheckedDocument:
    """Check one uploaded document; raise :class:`DocumentRejected` with the first rule it breaks.

    ``code`` says which requirement the file fulfils (e.g. ``company_registration``); ``declared_type``
    is the multipart part's content type, when the client sent one.
    """
    if code not in DOCUMENT_LABELS:
        raise DocumentRejected("document_code_unknown", f"'{code}' is not a known document code")
    name = _check_name(filename)
    check_size(len(content), policy)
    kind = sniff(content)
    if kind is None or kind not in policy.kinds:
        allowed = ", ".join(sorted(k.value.upper() for k in policy.kinds))
        raise DocumentRejected(
            "document_type_not_allowed",
            f"'{name}' is not an accepted file type (accepted: {allowed}; recognised by content)",
        )
    ext = name.rsplit(".", 1)[1].lower() if "." in name else ""
    by_name = _EXTENSIONS.get(ext)
    if by_name is not kind:
        raise DocumentRejected(
            "document_type_mismatch",
            f"'{name}' has the content of a {kind.value.upper()} file but its name does not end in "
            f"{_extensions_of(kind)}",
        )
    if declared_type is not None:
        base = declared_type.split(";", 1)[0].strip().lower()
        if _CONTENT_TYPES.get(base) is not kind:
            raise DocumentRejected(
                "document_type_mismatch",
                f"'{name}' was declared as '{base}' but its content is {kind.value.upper()}",
            )
    return CheckedDocument(
        code=code, kind=kind, filename=name, size=len(content), sha256=hashlib.sha256(content).hexdigest()
    )


def _extensions_of(kind: FileKind) -> str:
    return " or ".join(f".{e}" for e, k in _EXTENSIONS.items() if k is kind)


def _check_name(filename: str) -> str:
    name = filename.strip()
    bad = not name or len(name) > MAX_NAME_LENGTH or name in {".", ".."}
    bad = bad or any(c in "/\\" or ord(c) < 32 or ord(c) == 127 for c in name)
    if bad:
        raise DocumentRejected(
            "document_name_invalid",
            f"a file name must be 1-{MAX_NAME_LENGTH} characters, without path separators or control "
            "characters",
        )
    return name
