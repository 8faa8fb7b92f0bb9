"""Write ``manifest.json`` next to a built appliance image: what is in it and every file's SHA-256.

Run by ``build-image.sh`` after the disk is assembled; ``sha256sum -c`` can check the outputs
from ``SHA256SUMS`` written beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

OUTPUTS = ("vmlinuz", "initrd.img", "python-packages.txt", "debian-packages.txt")


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed (sparse holes read as zeros)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _pairs(path: Path, sep: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _, version = line.partition(sep)
        if name and version:
            pairs[name.strip()] = version.strip()
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--suite", required=True)
    parser.add_argument("--cmdline", required=True)
    parser.add_argument("--seconds", type=int, required=True)
    args = parser.parse_args(argv)
    out: Path = args.out
    disks = sorted(out.glob("radiant-*.raw"))
    files = {}
    for path in [*disks, *(out / name for name in OUTPUTS)]:
        files[path.name] = {
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "allocated_bytes": path.stat().st_blocks * 512,
        }
    debian = _pairs(out / "debian-packages.txt", " ")
    python = _pairs(out / "python-packages.txt", "==")
    manifest = {
        "format": "radiant-image/1",
        "app_version": args.version,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": args.seconds,
        "debian": {
            "suite": args.suite,
            "kernel": debian.get("linux-image-amd64"),
            "systemd": debian.get("systemd"),
            "python3": debian.get("python3"),
            "packages": len(debian),
        },
        "python_packages": python,
        "kernel_cmdline": args.cmdline,
        "partitions": [
            "RADIANT-ROOT (ext4, ro)",
            "RADIANT-APP (ext4, /opt/radiant)",
            "RADIANT-DATA (ext4, /var/lib/radiant)",
        ],
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    sums = "".join(f"{info['sha256']}  {name}\n" for name, info in files.items())
    (out / "SHA256SUMS").write_text(sums, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
