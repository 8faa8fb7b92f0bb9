"""The box certificate (appliance/tls.py): names, key type, files, fingerprint, site PKI."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from appliance import tls
from appliance.config import ConfigError, Settings


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path, **extra)  # type: ignore[arg-type]


def test_box_certificate_is_p256_with_the_box_names(tmp_path: Path) -> None:
    settings = _settings(tmp_path, tls_extra_names="pacs-gw.clinic.example,10.9.8.7")
    cert_path, key_path = tls.ensure_box_certificate(settings)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = tls.load_certificate(cert_path)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    host = socket.gethostname().lower()
    assert host in dns and f"{host.split('.')[0]}.local" in dns and "localhost" in dns
    assert "pacs-gw.clinic.example" in dns
    assert ipaddress.ip_address("127.0.0.1") in ips and ipaddress.ip_address("10.9.8.7") in ips
    # Made once: a second call returns the same files unchanged.
    before = tls.fingerprint_sha256(cert_path)
    assert tls.ensure_box_certificate(settings) == (cert_path, key_path)
    assert tls.fingerprint_sha256(cert_path) == before


def test_fingerprint_matches_openssl(tmp_path: Path) -> None:
    cert_path, _ = tls.ensure_box_certificate(_settings(tmp_path))
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert_path), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().split("=", 1)[1] == tls.fingerprint_sha256(cert_path)


def test_renew_rotates_key_and_fingerprint(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    cert_path, key_path = tls.ensure_box_certificate(settings)
    before = tls.fingerprint_sha256(cert_path)
    tls.write_box_certificate(settings)
    assert tls.fingerprint_sha256(cert_path) != before
    tls.check_pair(cert_path, key_path)


def test_server_context_completes_a_handshake_with_the_certificate_as_anchor(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    server = tls.server_ssl_context(settings)
    cert_path, _ = tls.box_paths(settings)
    client = ssl.create_default_context(cafile=str(cert_path))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        raw = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        import threading

        result: dict[str, object] = {}

        def serve() -> None:
            with server.wrap_socket(accepted, server_side=True) as conn:
                result["data"] = conn.recv(5)
                conn.sendall(b"pong!")

        thread = threading.Thread(target=serve)
        thread.start()
        with client.wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(b"ping!")
            assert conn.recv(5) == b"pong!"
        thread.join(10)
    assert result["data"] == b"ping!"


def test_site_certificate_wins_and_a_mismatched_key_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "site"
    made = tls.write_box_certificate(_settings(site))
    other = tls.write_box_certificate(_settings(tmp_path / "other"))
    settings = _settings(tmp_path / "box", tls_cert=made[0], tls_key=made[1])
    assert tls.ensure_box_certificate(settings) == made
    assert not tls.box_paths(settings)[0].exists()
    with pytest.raises(tls.CertificateError, match="supplies"):
        tls.write_box_certificate(settings)
    wrong = _settings(tmp_path / "box", tls_cert=made[0], tls_key=other[1])
    with pytest.raises(ConfigError, match="RADIANT_TLS_CERT"):
        tls.ensure_box_certificate(wrong)


def test_cert_without_key_is_a_configuration_error(tmp_path: Path) -> None:
    from appliance.config import load_settings

    with pytest.raises(ConfigError, match="RADIANT_TLS_KEY"):
        load_settings(data_dir=tmp_path, tls_cert=tmp_path / "x.crt")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("box.local", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert tls.is_loopback(host) is loopback


def test_what_serve_listens_with(tmp_path: Path) -> None:
    loopback = _settings(tmp_path)
    assert tls.http_certificate(loopback) is None  # auto: plain HTTP on 127.0.0.1
    lan = _settings(tmp_path, http_host="0.0.0.0")
    with pytest.raises(ConfigError, match="RADIANT_ALLOW_PLAINTEXT_HTTP=true"):
        tls.http_certificate(lan)  # no certificate: refused
    allowed = _settings(tmp_path, http_host="0.0.0.0", allow_plaintext_http=True)
    assert tls.http_certificate(allowed) is None
    assert tls.plaintext_exposed(allowed, tls_active=False)
    assert not tls.plaintext_exposed(loopback, tls_active=False)
    forced = _settings(tmp_path, http_tls="on")
    made = tls.http_certificate(forced)  # on: HTTPS on loopback too, certificate made
    assert made == tls.box_paths(forced)
    assert tls.http_certificate(lan) == made  # the box certificate now exists: HTTPS
    assert tls.http_certificate(allowed) == made  # a certificate wins over the permission
    off = _settings(tmp_path, http_host="0.0.0.0", http_tls="off")
    with pytest.raises(ConfigError):
        tls.http_certificate(off)
