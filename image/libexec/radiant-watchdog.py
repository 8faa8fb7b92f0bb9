"""One watchdog probe of the RadiantAI appliance (run by radiant-watchdog.timer every minute).

The appliance does not speak sd_notify, so systemd's own watchdog cannot see a process that runs
but no longer answers. This probe asks ``GET /healthz`` (address and port from the appliance's
own settings: environment, ``.env``, ``<data dir>/provisioned.env``) and counts consecutive
failures in a state file; at ``--failures`` in a row it runs ``systemctl restart UNIT``.

It does nothing while the unit is not active (a crash is ``Restart=always``'s job, a stop is the
administrator's) or is younger than ``--grace`` seconds (start-up, migrations).
Exit status 0 on a healthy probe or a skipped one, 1 on a failed probe, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def _log(message: str) -> None:
    print(f"radiant-watchdog: {message}", flush=True)


def _systemctl(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False, timeout=120)


def _active_for_s(binary: str, unit: str) -> float | None:
    """Seconds since the unit became active, or None when it is not active."""
    if _systemctl(binary, "is-active", "--quiet", unit).returncode != 0:
        return None
    shown = _systemctl(binary, "show", unit, "-p", "ActiveEnterTimestampMonotonic", "--value")
    value = shown.stdout.strip()
    if not value.isdigit() or int(value) == 0:
        return float("inf")
    return time.monotonic() - int(value) / 1e6


def health_url() -> str:
    """``http(s)://<host>:<port>/healthz`` from the appliance's settings (0.0.0.0 ->
    127.0.0.1; https when the appliance serves TLS under them)."""
    from appliance import tls
    from appliance.config import ConfigError, load_settings

    settings = load_settings()
    try:
        scheme = "https" if tls.http_certificate(settings) else "http"
    except (ConfigError, tls.CertificateError):
        scheme = "http"  # the appliance refuses to start: the probe reports it down
    host = settings.http_host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.http_port}/healthz"


def probe(url: str, timeout: float) -> str | None:
    """None when healthy, else why not."""
    try:
        # A liveness probe of this machine's own server: the certificate is not what it checks.
        context = ssl._create_unverified_context() if url.startswith("https:") else None  # noqa: S323
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310
            body = json.loads(response.read(65536) or b"{}")
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    status = body.get("status") if isinstance(body, dict) else None
    return None if status == "ok" else f"status {status!r}"


def _read_count(state: Path) -> int:
    try:
        return int(state.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="radiant-watchdog", description=__doc__.split("\n")[0])
    parser.add_argument("--unit", default="radiant.service")
    parser.add_argument("--state", type=Path, default=Path("/run/radiant-watchdog/failures"))
    parser.add_argument("--url", help="default: /healthz at the appliance's configured address")
    parser.add_argument("--failures", type=int, default=3, help="restart after this many in a row")
    parser.add_argument("--grace", type=float, default=300.0, help="seconds after start to wait")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per probe")
    parser.add_argument("--systemctl", default="systemctl")
    args = parser.parse_args(argv)
    if args.failures < 1 or args.timeout <= 0 or args.grace < 0:
        _log("--failures must be >= 1, --timeout > 0, --grace >= 0")
        return 2
    active_for = _active_for_s(args.systemctl, args.unit)
    if active_for is None:
        args.state.unlink(missing_ok=True)
        _log(f"{args.unit} is not active; nothing to watch")
        return 0
    if active_for < args.grace:
        _log(f"{args.unit} started {active_for:.0f} s ago; within the {args.grace:.0f} s grace")
        return 0
    try:
        url = args.url or health_url()
    except Exception as exc:  # a broken configuration: the appliance cannot start either
        _log(f"cannot read the appliance's settings: {exc}")
        return 2
    reason = probe(url, args.timeout)
    if reason is None:
        args.state.unlink(missing_ok=True)
        return 0
    count = _read_count(args.state) + 1
    _log(f"{url} failed ({reason}); {count} of {args.failures} in a row")
    if count >= args.failures:
        _log(f"restarting {args.unit}")
        restarted = _systemctl(args.systemctl, "restart", args.unit)
        if restarted.returncode != 0:
            _log(f"systemctl restart failed: {restarted.stderr.strip()}")
        count = 0
    args.state.parent.mkdir(parents=True, exist_ok=True)
    args.state.write_text(f"{count}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
