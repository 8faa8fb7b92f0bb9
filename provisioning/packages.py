"""Debian packages the appliance needs, installed when missing.

The lists live in ``pyproject.toml`` under ``[tool.radiant.apt]`` (one list per purpose, e.g.
``run`` and ``test``) so that the README's two commands work on a machine that has only Python,
pip and apt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def wanted(group: str, pyproject: Path = PYPROJECT) -> list[str]:
    """The Debian package names listed for ``group``; KeyError names an unknown group."""
    table = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    groups: dict[str, list[str]] = table.get("tool", {}).get("radiant", {}).get("apt", {})
    if group not in groups:
        raise KeyError(f"unknown package group {group!r}; known: {', '.join(sorted(groups))}")
    return list(groups[group])


def missing(packages: list[str]) -> list[str]:
    """Those of ``packages`` that dpkg does not report as installed."""
    if not packages:
        return []
    if shutil.which("dpkg-query") is None:
        return list(packages)
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}
    return [p for p in packages if p not in installed]


def ensure(group: str) -> int:
    """Install the missing packages of ``group`` with apt-get; returns an exit code."""
    todo = missing(wanted(group))
    if not todo:
        return 0
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            print(
                "These Debian packages are needed and missing: "
                f"{' '.join(todo)}. Install them as root: apt-get install {' '.join(todo)}",
                file=sys.stderr,
            )
            return 1
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"==> apt-get install {' '.join(todo)}", file=sys.stderr)
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *todo],
        check=True,
        env=env,
    )
    still = missing(todo)
    if still:
        print(f"apt-get did not install: {' '.join(still)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "ensure":
        print("usage: python -m provisioning.packages ensure GROUP", file=sys.stderr)
        return 2
    try:
        return ensure(args[1])
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"package installation failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
