"""Signed statements: what the publisher vouches for, checkable by anyone with the public key.

A statement is a small JSON payload (a model version's manifest digest, for one) signed
with an AWS KMS asymmetric key (ECC_NIST_P256, ECDSA_SHA_256). Why KMS rather than the
OpenSSF model-signing format: the private key never leaves KMS, IAM and the key policy
say who may call ``kms:Sign`` (only the publishing identity; the controller, serving and
the drift job may only read the public key), CloudTrail records every signature, and the
same API runs on the local endpoint. The manifest already lists every file's sha256 (what
model-signing's own manifest would list), so one signature over its digest covers the
model, the baseline, the metrics the gates read, and the feature schema.

Verification is local: the public key is fetched once per process (``GetPublicKey``) and
every check after that is a pure computation, so serving makes no KMS call per load and a
verifier needs no permission beyond ``kms:GetPublicKey``.

The envelope (``manifest.sig``)::

    {"payload": {...}, "signature": {"key_id": ARN, "algorithm": "ECDSA_SHA_256",
                                     "value": base64}}

The signature covers the payload's canonical JSON (sorted keys, no whitespace), so any
reader re-derives the exact signed bytes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pydantic import BaseModel, ConfigDict, ValidationError

from mlops_core import aws
from mlops_core.errors import IntegrityError, MlopsError, NotFound, SigningUnavailable

ALGORITHM = "ECDSA_SHA_256"
KEY_SPEC = "ECC_NIST_P256"
# KMS signs a RAW message of at most 4096 bytes; statements are far smaller.
MAX_MESSAGE = 4096


class SignatureInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_id: str
    algorithm: str
    value: str


class Envelope(BaseModel):
    """A payload and its signature, as stored next to what it vouches for."""

    model_config = ConfigDict(extra="forbid")
    payload: dict[str, Any]
    signature: SignatureInfo

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def canonical(payload: dict[str, Any]) -> bytes:
    """The exact bytes a signature covers."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def parse_envelope(raw: bytes, where: str) -> Envelope:
    try:
        return Envelope.model_validate_json(raw)
    except ValidationError as exc:
        raise IntegrityError(
            f"malformed signature file: {exc.errors()[0]['msg']}",
            where=where,
            hint="the signature was not written by the platform; do not use this version",
        ) from None


def _kms_error(exc: ClientError, key: str, doing: str) -> MlopsError:
    code = aws.error_code(exc)
    if code in ("NotFoundException", "NotFound"):
        return NotFound(
            f"the signing key {key!r} does not exist",
            hint="run 'mlopsctl dev up' (local) or 'terraform apply' (AWS), "
            "or set MLOPS_SIGNING_KEY to the key's ARN",
        )
    return SigningUnavailable(
        f"cannot {doing} with KMS key {key!r}: {code}",
        hint="only the publishing identity may sign (kms:Sign); verifiers need kms:GetPublicKey",
    )


def sign(key: str, payload: dict[str, Any]) -> Envelope:
    """Sign ``payload`` with the KMS key ``key`` (an ARN, key id or alias)."""
    message = canonical(payload)
    if len(message) > MAX_MESSAGE:
        raise ValueError(f"a statement is at most {MAX_MESSAGE} bytes, not {len(message)}")
    try:
        out = aws.client("kms").sign(
            KeyId=key, Message=message, MessageType="RAW", SigningAlgorithm=ALGORITHM
        )
    except ClientError as exc:
        raise _kms_error(exc, key, "sign") from None
    return Envelope(
        payload=payload,
        signature=SignatureInfo(
            key_id=out["KeyId"],
            algorithm=ALGORITHM,
            value=base64.b64encode(out["Signature"]).decode(),
        ),
    )


_public_keys: dict[str, tuple[str, ec.EllipticCurvePublicKey]] = {}
_keys_lock = threading.Lock()


def public_key(key: str, *, refresh: bool = False) -> tuple[str, ec.EllipticCurvePublicKey]:
    """The key's ARN and public key, fetched once per process (again with ``refresh``:
    an alias may have moved to a new key)."""
    with _keys_lock:
        cached = None if refresh else _public_keys.get(key)
    if cached is not None:
        return cached
    try:
        out = aws.client("kms").get_public_key(KeyId=key)
    except ClientError as exc:
        raise _kms_error(exc, key, "read the public key") from None
    if ALGORITHM not in out.get("SigningAlgorithms", []):
        raise SigningUnavailable(
            f"KMS key {key!r} does not sign with {ALGORITHM}",
            hint=f"the model-signing key is a {KEY_SPEC} SIGN_VERIFY key",
        )
    loaded = load_der_public_key(out["PublicKey"])
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise SigningUnavailable(f"KMS key {key!r} is not an elliptic-curve key")
    with _keys_lock:
        _public_keys[key] = (out["KeyId"], loaded)
    return out["KeyId"], loaded


def _key_uuid(key_id: str) -> str:
    """``arn:aws:kms:...:key/UUID`` and ``UUID`` name the same key (KMS answers with
    either, depending on the call)."""
    return key_id.rpartition("/")[2]


def verify(key: str, envelope: Envelope, expected: dict[str, Any], where: str) -> None:
    """Check that ``envelope`` is ``key``'s signature over exactly ``expected``.

    ``expected`` is what the caller derived itself (the digest it computed, the project
    and version it asked for), so a valid signature over another statement (a replay of
    another version's signature) is refused like a forged one."""
    if envelope.payload != expected:
        differs = sorted(
            k
            for k in expected.keys() | envelope.payload.keys()
            if envelope.payload.get(k) != expected.get(k)
        )
        raise IntegrityError(
            f"the signature vouches for another statement ({', '.join(differs)} differ)",
            where=where,
            hint="the signed digest does not match what is stored; do not use this version",
        )
    if envelope.signature.algorithm != ALGORITHM:
        raise IntegrityError(
            f"unexpected signature algorithm {envelope.signature.algorithm!r}", where=where
        )
    arn, pub = public_key(key)
    if _key_uuid(envelope.signature.key_id) != _key_uuid(arn):
        arn, pub = public_key(key, refresh=True)
    if _key_uuid(envelope.signature.key_id) != _key_uuid(arn):
        raise IntegrityError(
            f"signed with {envelope.signature.key_id}, not with the platform's key {arn}",
            where=where,
            hint="only what the platform's own key signed is trusted (if this is the "
            "platform's record, MLOPS_SIGNING_KEY or MLOPS_PROMOTION_KEY names another key)",
        )
    try:
        pub.verify(
            base64.b64decode(envelope.signature.value, validate=True),
            canonical(expected),
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise IntegrityError(
            "the signature does not verify with the platform's key",
            where=where,
            hint="it was not signed by the platform (or was altered since); do not use it",
        ) from None


# -- sealed records ---------------------------------------------------------------------
# A record the platform keeps in S3 (a registration revision, a promotion-log entry) is
# stored sealed: the document with a signature over a statement of its digest. The digest,
# not the document, is signed so a record of any size fits KMS's 4096-byte message, and the
# statement names the record's type, so a signature of one kind of record is never
# accepted for another.


#: The largest sealed record read (a registration with hundreds of features is tens of KB):
#: a bigger object is refused before it is read, not held in memory.
MAX_SEALED_BYTES = 1 << 20


def read_sealed(obj: dict[str, Any], where: str) -> bytes:
    """The body of an S3 ``get_object`` response holding a sealed record, refused with
    IntegrityError when larger than :data:`MAX_SEALED_BYTES`."""
    size = int(obj.get("ContentLength") or 0)
    raw = b"" if size > MAX_SEALED_BYTES else obj["Body"].read(MAX_SEALED_BYTES + 1)
    if size > MAX_SEALED_BYTES or len(raw) > MAX_SEALED_BYTES:
        obj["Body"].close()
        raise IntegrityError(
            f"not a sealed record: {size or len(raw)} bytes, more than the "
            f"{MAX_SEALED_BYTES} a record may hold",
            where=where,
            hint="records are written sealed by mlopsctl and the controller only; "
            "find out who wrote this object, and do not trust what it says",
        )
    return raw


class Sealed(BaseModel):
    """A document and the signature over :func:`document_statement` of it."""

    model_config = ConfigDict(extra="forbid")
    document: dict[str, Any]
    signature: SignatureInfo


def document_statement(
    kind: str, document: dict[str, Any], subject: str | None = None
) -> dict[str, Any]:
    """What the signature of a sealed record covers: its type, its digest and, when
    given, its ``subject`` (where it belongs, e.g. its S3 key), so that a genuine record
    copied to another place does not verify there."""
    statement = {"type": kind, "sha256": hashlib.sha256(canonical(document)).hexdigest()}
    if subject is not None:
        statement["subject"] = subject
    return statement


@contextlib.contextmanager
def promotion_key_errors(key: str, sealed: str) -> Iterator[None]:
    """Name the promotion-signing key, and its setting, in a key that cannot be used
    (this module's own words are about the model-signing key, MLOPS_SIGNING_KEY).
    ``sealed``: what the key seals, e.g. "promotion log entries"."""
    try:
        yield
    except (NotFound, SigningUnavailable) as exc:
        raise type(exc)(
            f"the promotion-signing key: {exc.what}",
            where=exc.where,
            hint=f"{sealed} are sealed with the promotion-signing key ({key}), a {KEY_SPEC} "
            "SIGN_VERIFY key that the controller and the people who promote may sign with: "
            "run 'mlopsctl dev up' (local) or 'terraform apply' (AWS), or set "
            "MLOPS_PROMOTION_KEY to its ARN",
        ) from None


def seal(key: str, kind: str, document: dict[str, Any], subject: str | None = None) -> bytes:
    """The stored bytes of ``document`` sealed with the KMS key ``key`` (for ``subject``)."""
    envelope = sign(key, document_statement(kind, document, subject))
    sealed = Sealed(document=document, signature=envelope.signature)
    return canonical(sealed.model_dump(mode="json"))


def unseal(
    key: str, kind: str, raw: bytes, where: str, subject: str | None = None
) -> dict[str, Any]:
    """The document of a sealed record, once its signature checks out with ``key`` (for
    ``subject``, when given); IntegrityError for anything unsealed, altered, signed with
    another key or, with ``subject``, sealed for another place."""
    try:
        sealed = Sealed.model_validate_json(raw)
    except ValidationError as exc:
        raise IntegrityError(
            f"not a sealed record: {exc.errors()[0]['msg']}",
            where=where,
            hint="records are written sealed by mlopsctl and the controller only; "
            "find out who wrote this object, and do not trust what it says",
        ) from None
    statement = document_statement(kind, sealed.document, subject)
    try:
        verify(key, Envelope(payload=statement, signature=sealed.signature), statement, where)
    except IntegrityError as exc:
        if subject is None or "does not verify" not in exc.what:
            raise
        raise IntegrityError(
            f"the seal does not verify for {subject} with the platform's key",
            where=where,
            hint="it was altered, or is a genuine record copied here from another place; "
            "do not trust what it says, and find out who wrote this object",
        ) from None
    return sealed.document
