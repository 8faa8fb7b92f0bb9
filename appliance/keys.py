"""Keys derived from the box secret, one per job, so that no key signs two kinds of thing.

HKDF-SHA256 (RFC 5869) with the box secret as input keying material, no salt (the secret is
already uniformly random, RFC 5869 3.1) and a distinct ``info`` label per use.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

JWT_LABEL = b"radiant/v1/api-access-token"
SESSION_LABEL = b"radiant/v1/screen-session-cookie"
UID_LABEL = b"radiant/v1/dicom-uid-entropy"


def derive(secret: str, label: bytes, length: int = 32) -> str:
    """``length`` bytes of HKDF output for ``label``, as unpadded URL-safe base64."""
    okm = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(
        secret.encode("utf-8")
    )
    return base64.urlsafe_b64encode(okm).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class DerivedKeys:
    """The keys the running appliance signs with."""

    jwt: str
    session: str
    uid_entropy: str

    @classmethod
    def from_secret(cls, secret: str) -> DerivedKeys:
        return cls(
            jwt=derive(secret, JWT_LABEL),
            session=derive(secret, SESSION_LABEL),
            uid_entropy=derive(secret, UID_LABEL),
        )
