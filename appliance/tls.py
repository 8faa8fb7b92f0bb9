"""The box's TLS certificate: made on the box at first boot, or supplied by the site.

The box certificate is self-signed, ECDSA P-256 with SHA-256 (RFC 5480, RFC 5758), and names the
box in its subjectAltName (RFC 5280 4.2.1.6): the host name, ``<host name>.local`` (mDNS,
RFC 6762), ``localhost`` and the box's addresses. It carries ``CA:TRUE, pathlen:0`` so that
clients can use it directly as their trust anchor (``curl --cacert``, a browser's authority
list) or pin its SHA-256 fingerprint. Files: ``<data_dir>/tls/box.crt`` and ``box.key``
(PKCS#8, 0600). A site that sets ``RADIANT_TLS_CERT`` and ``RADIANT_TLS_KEY`` (hospital PKI)
replaces it; the box then never writes a certificate.

The same certificate serves HTTPS (granian) and DICOM TLS (PS3.15 Annex B).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.config import ConfigError, Settings
from radiant_common.durable import write_atomic

TLS_DIR = "tls"
CERT_FILE = "box.crt"
KEY_FILE = "box.key"
VALID_DAYS = 825
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CertificateError(Exception):
    """A certificate or key file is missing, unreadable or does not match."""


def box_paths(settings: Settings) -> tuple[Path, Path]:
    """Where the box's own certificate and key live (whether or not they exist)."""
    folder = settings.data_dir / TLS_DIR
    return folder / CERT_FILE, folder / KEY_FILE


def site_supplied(settings: Settings) -> bool:
    """True when the site configured its own certificate and key (not the box's files)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return False
    return settings.tls_cert.resolve() != box_paths(settings)[0].resolve()


def http_certificate(settings: Settings) -> tuple[Path, Path] | None:
    """What ``radiant serve`` listens with: a certificate and key (HTTPS) or None (HTTP).

    ``RADIANT_HTTP_TLS``:

    - ``auto`` (default): plain HTTP on a loopback address (only this machine can connect);
      on any other address HTTPS with the site's certificate (``RADIANT_TLS_CERT``/``KEY``)
      or the box's own one made by first boot or ``radiant tls ensure``/``renew``;
    - ``on``: HTTPS on any address (the box's certificate is made when there is none);
    - ``off``: plain HTTP.

    Plain HTTP on a non-loopback address needs ``RADIANT_ALLOW_PLAINTEXT_HTTP=true``; without
    it ConfigError: the box refuses to start.
    """
    if settings.http_tls == "on":
        return ensure_box_certificate(settings)
    if is_loopback(settings.http_host):
        return None
    if settings.http_tls == "auto":
        paths = certificate_paths(settings)
        if paths is not None:
            return ensure_box_certificate(settings)  # checks that the key matches
    if settings.allow_plaintext_http:
        return None
    raise ConfigError(
        f"configuration error: RADIANT_HTTP_HOST: {settings.http_host} is not a loopback "
        "address and no TLS certificate is configured: run `radiant tls ensure` (the box's own "
        "certificate), set RADIANT_TLS_CERT and RADIANT_TLS_KEY (the site's), or set "
        "RADIANT_ALLOW_PLAINTEXT_HTTP=true to send passwords in clear"
    )


def plaintext_exposed(settings: Settings, tls_active: bool) -> bool:
    """True when the screen and API answer plain HTTP beyond this machine (the red banner)."""
    return not tls_active and not is_loopback(settings.http_host)


def certificate_paths(settings: Settings) -> tuple[Path, Path] | None:
    """The certificate and key the box serves with, None when there is none yet."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        return settings.tls_cert, settings.tls_key
    cert, key = box_paths(settings)
    return (cert, key) if cert.is_file() and key.is_file() else None


def ensure_box_certificate(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key to serve with: the site's, else the box's (made when missing).

    A site's files are checked (readable, key matches); ConfigError names the variable.
    """
    if site_supplied(settings):
        assert settings.tls_cert is not None and settings.tls_key is not None
        try:
            check_pair(settings.tls_cert, settings.tls_key)
        except CertificateError as exc:
            raise ConfigError(
                f"configuration error: RADIANT_TLS_CERT/RADIANT_TLS_KEY: {exc}"
            ) from None
        return settings.tls_cert, settings.tls_key
    cert, key = box_paths(settings)
    if cert.is_file() and key.is_file():
        return cert, key
    return write_box_certificate(settings)


def write_box_certificate(settings: Settings) -> tuple[Path, Path]:
    """Make a new key pair and certificate for the box and write both (replacing old ones).

    The key is written first (0600, fsynced), then the certificate; each by rename, so a
    crash leaves either the old pair or the new key beside the old certificate, which
    :func:`check_pair` then reports and the next run replaces.
    """
    if site_supplied(settings):
        raise CertificateError(
            "the site supplies this box's certificate (RADIANT_TLS_CERT): renew it there"
        )
    cert_path, key_path = box_paths(settings)
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_certificate(key, box_names(settings), settings.site_name)
    write_atomic(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def build_certificate(
    key: ec.EllipticCurvePrivateKey,
    names: tuple[list[str], list[IpAddress]],
    organization: str,
    *,
    days: int = VALID_DAYS,
) -> x509.Certificate:
    """A self-signed server (and DICOM client) certificate for ``names`` (DNS, IP)."""
    dns_names, addresses = names
    common_name = (dns_names[0] if dns_names else "radiant")[:64]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, (organization or "RadiantAI")[:64]),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(a) for a in addresses]
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def box_names(settings: Settings) -> tuple[list[str], list[IpAddress]]:
    """DNS names and addresses the box answers to: host name, ``<name>.local``, ``localhost``,
    loopback, the addresses its host name resolves to, its outbound addresses and the
    configured listen addresses, plus ``RADIANT_TLS_EXTRA_NAMES``."""
    host = socket.gethostname().strip().lower() or "radiant"
    short = host.split(".")[0]
    dns: list[str] = [host]
    for name in (f"{short}.local", "localhost"):
        if name not in dns:
            dns.append(name)
    addresses: list[IpAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    candidates: list[str] = [settings.http_host, settings.dicom_host]
    with contextlib.suppress(OSError):
        candidates += [str(info[4][0]) for info in socket.getaddrinfo(host, None)]
    candidates += _outbound_addresses()
    for extra in (n.strip() for n in settings.tls_extra_names.split(",")):
        if extra:
            candidates.append(extra)
    for text in candidates:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            name = text.strip().lower().rstrip(".")
            if name and name not in dns:
                dns.append(name)
            continue
        if not address.is_unspecified and address not in addresses:
            addresses.append(address)
    return dns, addresses


def _outbound_addresses() -> list[str]:
    """The source address the box would use towards a remote network (no packet is sent)."""
    found: list[str] = []
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))  # UDP connect only picks a route (RFC 5737/3849 targets)
            found.append(str(probe.getsockname()[0]))
    return found


def load_certificate(cert_path: Path) -> x509.Certificate:
    """The first certificate of a PEM file."""
    try:
        return x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        raise CertificateError(f"{cert_path}: {exc.strerror or exc}") from None
    except ValueError:
        raise CertificateError(f"{cert_path}: not a PEM certificate") from None


def fingerprint_sha256(cert_path: Path) -> str:
    """SHA-256 over the certificate's DER, as colon-separated upper-case hex (the form
    browsers and ``openssl x509 -fingerprint -sha256`` show)."""
    digest = load_certificate(cert_path).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def not_after(cert_path: Path) -> dt.datetime:
    return load_certificate(cert_path).not_valid_after_utc


def check_pair(cert_path: Path, key_path: Path) -> None:
    """Raise CertificateError unless the key file holds the certificate's private key."""
    cert = load_certificate(cert_path)
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise CertificateError(f"{key_path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise CertificateError(f"{key_path}: not an unencrypted PEM private key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise CertificateError(f"{key_path} is not the key of {cert_path}")


def server_context(
    cert_path: Path, key_path: Path, *, client_ca: Path | None = None
) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` for a server (TLS 1.2 or later); with ``client_ca``, clients must
    present a certificate that chains to it (mutual TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def server_ssl_context(settings: Settings, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """The server context for the box's certificate (made when missing)."""
    cert, key = ensure_box_certificate(settings)
    return server_context(cert, key, client_ca=client_ca)


def is_loopback(host: str) -> bool:
    """True when ``host`` only listens on this machine."""
    if host.strip().lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


