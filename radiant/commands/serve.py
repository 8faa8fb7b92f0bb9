"""``radiant serve`` (the API, the screen and the receivers under granian) and ``radiant tls
show|ensure|renew`` (the box's certificate)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from appliance.config import load_settings
from radiant.common import (
    EXIT_CONFIG,
    EXIT_OK,
    CliError,
    DataDirOption,
    cli_actor,
    cli_settings,
    open_context,
)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API and screen with granian (one worker: NiceGUI keeps state in process)."""
    from granian import Granian
    from granian.constants import Interfaces, SSLProtocols

    from appliance import logs, tls
    from appliance.context import prepare

    overrides = {"http_host": args.host, "http_port": args.port, "data_dir": args.data_dir}
    settings = load_settings(**overrides)
    logs.configure(settings.log_level)
    ctx = prepare(settings)  # fail here, with one line, rather than inside the worker
    ctx.pool.close_all()
    certificate = tls.http_certificate(settings)  # refuses plain HTTP beyond loopback
    scheme = "https" if certificate else "http"
    # The worker builds the app from the environment: pass the effective values down.
    os.environ["RADIANT_HTTP_HOST"] = settings.http_host
    os.environ["RADIANT_HTTP_PORT"] = str(settings.http_port)
    os.environ["RADIANT_DATA_DIR"] = str(settings.data_dir.resolve())
    logs.get_logger("radiant.cli").info(
        "serving",
        url=f"{scheme}://{settings.http_host}:{settings.http_port}",
        data_dir=str(settings.data_dir.resolve()),
        mode=settings.mode.value,
        tls_fingerprint=tls.fingerprint_sha256(certificate[0]) if certificate else None,
    )
    if tls.plaintext_exposed(settings, certificate is not None):
        logs.get_logger("radiant.cli").warning(
            "plaintext_http", detail="RADIANT_ALLOW_PLAINTEXT_HTTP: passwords cross the network"
        )
    Granian(
        "appliance.app:create_app",
        factory=True,
        address=settings.http_host,
        port=settings.http_port,
        interface=Interfaces.ASGI,
        workers=1,
        log_access=False,
        log_dictconfig=logs.granian_config(),
        websockets=True,
        ssl_cert=certificate[0].resolve() if certificate else None,
        ssl_key=certificate[1].resolve() if certificate else None,
        ssl_protocol_min=SSLProtocols.tls12,
    ).serve()
    return EXIT_OK


def _print_certificate(cert: Path) -> None:
    from cryptography import x509

    from appliance import tls

    loaded = tls.load_certificate(cert)
    try:
        names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        alt = ", ".join(str(n.value) for n in names)
    except x509.ExtensionNotFound:
        alt = ""
    print(f"certificate: {cert}")
    print(f"sha256 fingerprint: {tls.fingerprint_sha256(cert)}")
    print(f"valid until: {loaded.not_valid_after_utc.isoformat()}")
    print(f"names: {alt}")


def cmd_tls_show(args: argparse.Namespace) -> int:
    """The certificate the screen, API and DICOM TLS serve; with ``ensure`` (first boot,
    containers) the box's own is made when none is configured or made yet."""
    from appliance import tls
    from appliance.config import prepare_data_dir

    settings = cli_settings(args)
    prepare_data_dir(settings)
    if args.tls_command == "ensure":
        cert, _ = tls.ensure_box_certificate(settings)
    else:
        paths = tls.certificate_paths(settings)
        if paths is None:
            raise CliError("no certificate yet: `radiant tls ensure` makes the box's own")
        cert = paths[0]
    _print_certificate(cert)
    print(f"source: {'site (RADIANT_TLS_CERT)' if tls.site_supplied(settings) else 'box'}")
    return EXIT_OK


def cmd_tls_renew(args: argparse.Namespace) -> int:
    """A new key pair and certificate for the box (audited); restart to serve it."""
    from appliance import tls
    from appliance.audit import service as audit

    ctx = open_context(args, quiet=False)
    settings, db = ctx.settings, ctx.pool.get()
    try:
        cert, _ = tls.write_box_certificate(settings)
    except tls.CertificateError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    fingerprint = tls.fingerprint_sha256(cert)
    audit.record(
        db,
        cli_actor(),
        "tls.renew",
        object_type="certificate",
        object_id=fingerprint,
    )
    _print_certificate(cert)
    print("restart the appliance to serve it; clients that pin the old fingerprint need the new")
    return EXIT_OK


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {value}")
    return value




def add_serve(sub: argparse._SubParsersAction, data_dir_option: DataDirOption) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser("serve", help="serve the API, the screen and the receivers")
    serve.add_argument("--host", help="listen address (RADIANT_HTTP_HOST)")
    serve.add_argument("--port", type=_port, help="HTTP port (RADIANT_HTTP_PORT)")
    data_dir_option(serve)
    serve.set_defaults(func=cmd_serve)


def add_tls(sub: argparse._SubParsersAction, data_dir_option: DataDirOption) -> None:  # type: ignore[type-arg]
    tls_parser = sub.add_parser("tls", help="the box's TLS certificate").add_subparsers(
        dest="tls_command", required=True, metavar="ACTION"
    )
    tls_show = tls_parser.add_parser(
        "show", help="print the served certificate's SHA-256 fingerprint, names and validity"
    )
    data_dir_option(tls_show)
    tls_show.set_defaults(func=cmd_tls_show)
    tls_ensure = tls_parser.add_parser(
        "ensure", help="make the box's certificate unless one exists or the site's is set; show it"
    )
    data_dir_option(tls_ensure)
    tls_ensure.set_defaults(func=cmd_tls_show)
    tls_renew = tls_parser.add_parser("renew", help="make a new key and certificate for the box")
    data_dir_option(tls_renew)
    tls_renew.set_defaults(func=cmd_tls_renew)
