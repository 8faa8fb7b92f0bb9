"""Keys derived from the box secret (appliance/keys.py): one per job, stable, RFC 5869."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance import keys


def test_each_job_gets_its_own_stable_key() -> None:
    secret = "s" * 48
    derived = keys.DerivedKeys.from_secret(secret)
    values = {derived.jwt, derived.session, derived.uid_entropy, secret}
    assert len(values) == 4
    assert keys.DerivedKeys.from_secret(secret) == derived
    assert keys.DerivedKeys.from_secret("t" * 48).jwt != derived.jwt


def test_rfc5869_test_case_3() -> None:
    # RFC 5869 A.3: SHA-256, no salt, no info; checks the HKDF this module relies on.
    ikm = bytes.fromhex("0b" * 22)
    okm = HKDF(algorithm=hashes.SHA256(), length=42, salt=None, info=b"").derive(ikm)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        "9d201395faa4b61a96c8"
    )
