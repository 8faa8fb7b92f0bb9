# RadiantAI tasks. Start from ./just (it prepares .venv), e.g. `./just run`, `./just test`.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv" / "bin"

# List the recipes.
default:
    @{{venv}}/just --list --justfile {{justfile()}}

# Serve the appliance (API, screen, receiver) on RADIANT_HTTP_HOST:RADIANT_HTTP_PORT.
run *ARGS: (apt "run")
    {{venv}}/radiant serve {{ARGS}}

# Run the whole test suite (unit, integration, e2e) and the linters.
test *ARGS: (apt "run") (apt "test") (apt "e2e") azurite ohif lint
    {{venv}}/python -m pytest {{ARGS}}

# Long fuzzing (atheris) of every target, or those named, SECONDS each; crashes: .cache/fuzz/crashes
fuzz SECONDS="600" *TARGETS:
    nice -n 19 {{venv}}/python -m tests.fuzz.long {{SECONDS}} {{TARGETS}}

# Regenerate the README's screenshots (docs/screenshots, 1280x800) with the e2e day, triage and
# OHIF tests.
screenshots *ARGS: (apt "run") (apt "test") (apt "e2e")
    mkdir -p docs/screenshots
    RADIANT_SCREENSHOT_DIR=docs/screenshots {{venv}}/python -m pytest tests/e2e/test_day.py tests/e2e/test_triage.py \
        tests/e2e/test_ohif.py tests/e2e/test_ohif_prior.py {{ARGS}}

azurite_version := "3.37.0"

# Azurite (Azure Blob protocol server for the sync tests) into .cache/azurite, once per version.
azurite:
    @command -v npm >/dev/null || {{venv}}/python -m provisioning.packages ensure node
    @test "$(node -p 'require("./.cache/azurite/node_modules/azurite/package.json").version' 2>/dev/null)" = "{{azurite_version}}" \
        || npm install --no-audit --no-fund --silent --prefix .cache/azurite azurite@{{azurite_version}}

ohif_version := "3.13.2"

# The OHIF viewer (@ohif/app, MIT; its prebuilt dist/ only: the package's own dependencies are
# build-time ones) into .cache/ohif/<version>/dist, once per version; served at /ohif/.
ohif:
    @command -v npm >/dev/null || {{venv}}/python -m provisioning.packages ensure node
    @test -f .cache/ohif/{{ohif_version}}/dist/index.html || ( \
        mkdir -p .cache/ohif/{{ohif_version}}.part && cd .cache/ohif/{{ohif_version}}.part \
        && npm pack --silent @ohif/app@{{ohif_version}} >/dev/null \
        && tar -xzf ohif-app-{{ohif_version}}.tgz && rm ohif-app-{{ohif_version}}.tgz \
        && test "$(node -p 'require("./package/package.json").version')" = "{{ohif_version}}" \
        && cd .. && rm -rf {{ohif_version}} && mv {{ohif_version}}.part/package {{ohif_version}} \
        && rm -rf {{ohif_version}}.part )

# ruff, mypy and the import layers contract (pyproject.toml [tool.importlinter]).
lint:
    {{venv}}/ruff check appliance ui ai sync provisioning radiant radiant_common tests bench image
    {{venv}}/mypy
    {{venv}}/lint-imports

# Ingest benchmark: the appliance's receiver against Orthanc (not a test).
bench-ingest *ARGS: (apt "bench")
    {{venv}}/python bench/ingest.py {{ARGS}}

# DICOMweb benchmark: /dicom-web against Orthanc's DICOMweb plugin (QIDO, WADO-RS, frames).
bench-dicomweb *ARGS: (apt "bench")
    {{venv}}/python bench/dicomweb.py {{ARGS}}

# Volume benchmark: our reconstruction against dcm2niix and SimpleITK (not a test).
bench-volumes *ARGS: (apt "test")
    {{venv}}/python -c 'import SimpleITK' 2>/dev/null || {{venv}}/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"
    {{venv}}/python bench/volumes.py {{ARGS}}

# AI benchmark: request to parsed findings for a CT (85 slices) and a chest X-ray with the
# configured engine (RADIANT_AI_*, or --engine/--model-dir/--endpoint); not a test.
bench-ai *ARGS:
    {{venv}}/python bench/ai.py {{ARGS}}

# Sync benchmark: database replication lag (Litestream) and file upload throughput (rclone crypt,
# verified) against a plain `rclone copy`, on a local S3 server (not a test).
bench-sync *ARGS:
    {{venv}}/python bench/sync.py {{ARGS}}

# Scale benchmark: API (20 clients) and C-FIND/C-STORE with a 100,000-instance index against an
# empty one (--instances/--studies for a quicker run); not a test.
bench-scale *ARGS:
    {{venv}}/python bench/scale.py {{ARGS}}

# The appliance's x86-64 disk image (Debian 12, read-only root, app slot, data partition) into
# .cache/image/out with manifest.json; as root, 5-10 min here (not part of `test`). DATA_MIB: the
# data partition as built (at least 6144; grown to the whole disk at boot): `just image 16384`.
image DATA_MIB=env("RADIANT_IMAGE_DATA_MIB", "8192"): (apt "image")
    RADIANT_IMAGE_DATA_MIB={{DATA_MIB}} PYTHON={{venv}}/python image/builder/build-image.sh

# Boot the built image under QEMU and check it from the host: first boot, provisioning, a study
# sent with storescu, the watchdog, power cuts (--rounds N). Over HTTPS pinned to the box's
# certificate. About 40-60 min under software emulation: see image/README.md. Not part of `test`.
image-test *ARGS: (apt "image")
    {{venv}}/python image/builder/vmtest.py {{ARGS}}

# Install the Debian packages a purpose needs (run | test | e2e | bench | node) when any is missing.
apt group:
    {{venv}}/python -m provisioning.packages ensure {{group}}
