"""Ed25519 keys and signed JSON documents (enrollment bundles, desired state, status).

Signing form: the document is a JSON object; its signature is the Ed25519 signature of the
canonical JSON (:func:`appliance.canonical.canonical_json`: keys sorted, no whitespace, UTF-8,
no ASCII escaping) of the object WITHOUT its ``signature`` field. The signature is stored in that
field as standard base64 (RFC 4648, with padding) of the 64 signature bytes. Public keys are
written as base64 of their 32 raw bytes; a key's fingerprint is ``sha256:`` and the first 32 hex
digits of SHA-256 over those raw bytes. Private keys are PKCS#8 PEM files, mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.canonical import canonical_json
from radiant_common import durable

SIGNATURE = "signature"


class SignatureError(Exception):
    """A document is unsigned, tampered with or signed by another key."""


class KeyFileError(Exception):
    """A key file is missing, unreadable or not an Ed25519 key."""


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_text(key: Ed25519PublicKey) -> str:
    """base64 of the 32 raw public key bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def parse_public(text: str) -> Ed25519PublicKey:
    """The public key written by :func:`public_text`; ValueError when it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def signing_bytes(document: dict[str, Any]) -> bytes:
    """The bytes a signature covers: canonical JSON of the document minus ``signature``."""
    return canonical_json({k: v for k, v in document.items() if k != SIGNATURE})


def document_sha256(document: dict[str, Any]) -> str:
    """SHA-256 (hex) of the whole document's canonical JSON, signature included."""
    return hashlib.sha256(canonical_json(document)).hexdigest()


def sign(document: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of ``document`` with its ``signature``."""
    body = {k: v for k, v in document.items() if k != SIGNATURE}
    signature = key.sign(signing_bytes(body))
    return body | {SIGNATURE: base64.b64encode(signature).decode("ascii")}


def verify(document: dict[str, Any], key: Ed25519PublicKey) -> None:
    """Raise :class:`SignatureError` unless ``document`` carries a valid signature by ``key``."""
    value = document.get(SIGNATURE)
    if not isinstance(value, str) or not value:
        raise SignatureError("the document is not signed")
    try:
        signature = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the signature is not base64") from None
    try:
        key.verify(signature, signing_bytes(document))
    except InvalidSignature:
        raise SignatureError(
            f"bad signature: the document was altered or not signed by {fingerprint(key)}"
        ) from None


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` as PKCS#8 PEM, 0600, atomically and fsynced; refuses to overwrite."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem, mode=0o600, replace=False)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII"
        raise KeyFileError(f"{path}: cannot read the public key ({reason})") from None
    try:
        return parse_public(text)
    except ValueError as exc:
        raise KeyFileError(f"{path}: not an Ed25519 public key ({exc})") from None


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, replace: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path`` (``mode``, fsynced), then rename it
    over ``path`` (or link it, refusing an existing file, when ``replace`` is false) and fsync
    the folder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    durable.write_atomic(path, data, mode=mode, replace=replace)
