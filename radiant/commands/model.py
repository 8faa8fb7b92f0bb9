"""``radiant model install|enable|list|verify|manifest``, added to the ``radiant`` parser by
:func:`add_commands`."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.audit.service import recorder
from radiant.common import (
    EXIT_CONFIG,
    EXIT_OK,
    DataDirOption,
    cli_actor,
    cli_settings,
    fail,
    open_context,
)


def _engine_note(engine: str) -> str | None:
    if engine == "transformers":
        return "restart the appliance (systemctl restart radiant) to load it"
    return (
        f"RADIANT_AI_ENGINE is {engine!r}: set RADIANT_AI_ENGINE=transformers to use the "
        "local model, then restart the appliance"
    )


def cmd_model_install(args: argparse.Namespace) -> int:
    from ai.install.errors import InstallError, SourceError
    from ai.install.service import install
    from ai.install.sources import open_source

    try:
        source = open_source(args.location, args.manifest, attempts=args.attempts)
    except InstallError as exc:
        return fail(str(exc), EXIT_CONFIG)
    ctx = open_context(args)
    try:
        result = install(
            ctx.settings,
            recorder(ctx.pool.get(), cli_actor(), "model"),
            source,
            name=args.name,
            manifest_sha256=args.manifest_sha256,
            enable=not args.no_enable,
            progress=lambda line: print(line, flush=True),
        )
    except SourceError as exc:
        hint = "; run the same command again to resume" if exc.resumable else ""
        return fail(f"{exc}{hint}; the previous model stays enabled")
    except InstallError as exc:
        return fail(f"{exc}; the previous model stays enabled")
    finally:
        source.close()
        ctx.pool.close_all()
    manifest = result.manifest
    state = "already installed" if result.already_installed else "installed"
    print(
        f"{state}: {result.name} ({manifest.model_id}"
        f"{' @ ' + manifest.revision if manifest.revision else ''}), {len(manifest.files)} files, "
        f"{manifest.total_bytes / 1e9:.2f} GB, every size and SHA-256 verified "
        f"(manifest sha256 {manifest.digest})"
    )
    if result.enabled:
        print(
            f"enabled: {result.name}{' (was ' + result.previous + ')' if result.previous else ''}"
        )
        note = _engine_note(ctx.settings.ai_engine)
        if note:
            print(f"note: {note}")
    return EXIT_OK


def cmd_model_enable(args: argparse.Namespace) -> int:
    from ai.install.errors import InstallError
    from ai.install.service import enable_model

    ctx = open_context(args)
    try:
        previous = enable_model(
            ctx.settings, recorder(ctx.pool.get(), cli_actor(), "model"), args.name
        )
    except InstallError as exc:
        return fail(f"{exc}")
    finally:
        ctx.pool.close_all()
    print(f"enabled: {args.name}{' (was ' + previous + ')' if previous else ''}")
    note = _engine_note(ctx.settings.ai_engine)
    if note:
        print(f"note: {note}")
    return EXIT_OK


def cmd_model_list(args: argparse.Namespace) -> int:
    from ai.install.service import list_models, pointer

    settings = cli_settings(args)
    models = list_models(settings)
    if not models:
        print(f"no models in {settings.data_dir / 'models'}")
    for model in models:
        mark = "*" if model.enabled else " "
        if not model.managed:
            print(f"{mark} {model.name}  (copied by hand: no manifest, cannot be verified)")
            continue
        size = f"{model.bytes / 1e9:.2f} GB" if model.bytes is not None else "?"
        print(
            f"{mark} {model.name}  {model.model_id or '?'}"
            f"{' @ ' + model.revision if model.revision else ''}  {model.files} files, {size}, "
            f"installed {model.installed_at or '?'} from a {model.source or '?'}"
        )
    print(f"the engine loads {pointer(settings)} (RADIANT_AI_ENGINE={settings.ai_engine})")
    return EXIT_OK


def cmd_model_verify(args: argparse.Namespace) -> int:
    from ai.install.errors import InstallError
    from ai.install.service import verify_model

    ctx = open_context(args)
    try:
        report = verify_model(
            ctx.settings, recorder(ctx.pool.get(), cli_actor(), "model"), args.name
        )
    except InstallError as exc:
        return fail(str(exc))
    finally:
        ctx.pool.close_all()
    for problem in report.problems:
        print(f"problem: {problem}")
    if not report.ok:
        return fail(f"{report.name}: {len(report.problems)} problems (see above)")
    print(
        f"{report.name}: {report.files} files, {report.bytes / 1e9:.2f} GB, all match the manifest"
    )
    return EXIT_OK


def cmd_model_manifest(args: argparse.Namespace) -> int:
    import hashlib

    from ai.install.errors import InstallError
    from ai.install.manifest import MANIFEST_NAME, make_manifest

    folder: Path = args.folder
    try:
        raw = make_manifest(
            folder, model_id=args.model_id, revision=args.revision, license_text=args.license
        )
    except InstallError as exc:
        return fail(str(exc), EXIT_CONFIG)
    out: Path = args.out or folder / MANIFEST_NAME
    try:
        out.write_bytes(raw)
    except OSError as exc:
        return fail(f"{out}: cannot be written ({exc.strerror})", EXIT_CONFIG)
    print(f"wrote {out} (sha256 {hashlib.sha256(raw).hexdigest()})")
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction, data_dir_option: DataDirOption) -> None:  # type: ignore[type-arg]
    """Add the ``model`` command group to the ``radiant`` parser."""
    from ai.install.manifest import DEFAULT_LICENSE, DEFAULT_MODEL_ID

    model = sub.add_parser(
        "model", help="install, enable and verify MedGemma checkpoints"
    ).add_subparsers(dest="model_command", required=True, metavar="ACTION")

    inst = model.add_parser(
        "install",
        help="install a checkpoint from a folder or an http(s) mirror, verified against its "
        "manifest, then enable it",
    )
    inst.add_argument("location", metavar="PATH|URL", help="a folder (USB stick) or a mirror URL")
    inst.add_argument(
        "--manifest",
        metavar="FILE|URL",
        help="the manifest (default: radiant-manifest.json in the folder or at the mirror)",
    )
    inst.add_argument(
        "--manifest-sha256", metavar="HEX", help="refuse a manifest whose SHA-256 differs"
    )
    inst.add_argument("--name", help="folder name under models/ (default: model and revision)")
    inst.add_argument(
        "--no-enable", action="store_true", help="install only; `radiant model enable` later"
    )
    inst.add_argument(
        "--attempts", type=int, default=4, help="tries per file from a mirror (default 4)"
    )
    data_dir_option(inst)
    inst.set_defaults(func=cmd_model_install)

    enable = model.add_parser("enable", help="enable an installed model (verified first)")
    enable.add_argument("name", metavar="NAME")
    data_dir_option(enable)
    enable.set_defaults(func=cmd_model_enable)

    listing = model.add_parser("list", help="installed models; * marks the enabled one")
    data_dir_option(listing)
    listing.set_defaults(func=cmd_model_list)

    verify = model.add_parser(
        "verify", help="re-hash a model's files against its manifest (default: the enabled one)"
    )
    verify.add_argument("name", nargs="?", metavar="NAME")
    data_dir_option(verify)
    verify.set_defaults(func=cmd_model_verify)

    make = model.add_parser(
        "manifest", help="write the manifest of a trusted checkpoint folder (sizes, SHA-256)"
    )
    make.add_argument("folder", type=Path, metavar="DIR")
    make.add_argument("--model-id", default=DEFAULT_MODEL_ID)
    make.add_argument("--revision", default="", help="e.g. the Hugging Face commit hash")
    make.add_argument("--license", default=DEFAULT_LICENSE, help="terms the model is used under")
    make.add_argument("--out", type=Path, help="default: DIR/radiant-manifest.json")
    make.set_defaults(func=cmd_model_manifest)
