"""The ``radiant`` command: one parser assembling the sub-commands of every package (serve,
migrate, user, audit, tls, import, fsck, volume, mode, sync, restore, provision, device, fleet,
update, model).

Errors print one line to stderr and exit non-zero: 2 for configuration or usage, 1 for a refused
operation or a failed check.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.config import ConfigError
from appliance.db.migrate import MigrationError
from radiant.commands import admin, data, fleet, model, provisioning, serve, sync, update
from radiant.common import EXIT_CONFIG, CliError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radiant", description="RadiantAI appliance")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, help="data directory (RADIANT_DATA_DIR)")

    serve.add_serve(sub, data_dir_option)
    admin.add_commands(sub, data_dir_option)
    serve.add_tls(sub, data_dir_option)
    data.add_commands(sub, data_dir_option)
    sync.add_commands(sub, data_dir_option)
    provisioning.add_commands(sub, data_dir_option)
    fleet_actions = fleet.add_commands(sub, data_dir_option)
    update.add_commands(
        sub,
        fleet_actions,
        data_dir_option,
        fleet.remote_options,
        fleet.key_option,
        fleet.run_fleet,
    )
    model.add_commands(sub, data_dir_option)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except MigrationError as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CliError as exc:
        print(f"radiant: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
