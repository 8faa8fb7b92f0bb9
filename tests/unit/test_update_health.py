"""The updater's health check (provisioning/update): over HTTPS when the appliance serves it,
trusting exactly the certificate the box serves (never unverified), over HTTP on loopback.
A real TLS server on 127.0.0.1 answers; another certificate is refused."""

from __future__ import annotations

from pathlib import Path

from appliance import tls
from appliance.config import Settings
from provisioning.update.updater import healthy, pinned_context
from radiant.commands.update import health_url
from tests.unit.test_image_watchdog import health_server


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path, **extra)  # type: ignore[arg-type]


def test_the_url_follows_what_serve_listens_with(tmp_path: Path) -> None:
    loopback = _settings(tmp_path / "a")
    assert health_url(loopback) == (f"http://127.0.0.1:{loopback.http_port}/healthz", None)
    lan = _settings(tmp_path / "b", http_host="0.0.0.0")
    tls.ensure_box_certificate(lan)
    url, cert = health_url(lan)
    assert url == f"https://127.0.0.1:{lan.http_port}/healthz"
    assert cert == tls.box_paths(lan)[0]
    off = _settings(tmp_path / "b", http_host="0.0.0.0", http_tls="off")
    assert health_url(off)[0].startswith("http://")


def test_healthy_over_https_pins_the_served_certificate(tmp_path: Path) -> None:
    box = _settings(tmp_path / "box", http_host="0.0.0.0")
    cert, key = tls.ensure_box_certificate(box)
    other = _settings(tmp_path / "other", http_host="0.0.0.0")
    other_cert, _ = tls.ensure_box_certificate(other)
    with health_server(tls.server_context(cert, key)) as (port, answer):
        url = f"https://127.0.0.1:{port}/healthz"
        assert healthy(url, 0, context=pinned_context(cert))
        assert not healthy(url, 0, context=pinned_context(other_cert))  # not the box's
        assert not healthy(f"http://127.0.0.1:{port}/healthz", 0)  # plain HTTP to TLS
        answer["status"] = "degraded"
        assert not healthy(url, 0, context=pinned_context(cert))
