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
test *ARGS: (apt "test") lint
    {{venv}}/python -m pytest {{ARGS}}

# ruff and mypy over the project's packages.
lint:
    {{venv}}/ruff check appliance ui ai sync provisioning tests
    {{venv}}/mypy

# Ingest benchmark: the appliance's receiver against Orthanc (not a test).
bench-ingest *ARGS: (apt "bench")
    {{venv}}/python bench/ingest.py {{ARGS}}

# Install the Debian packages a purpose needs (run | test) when any is missing.
apt group:
    {{venv}}/python -m provisioning.packages ensure {{group}}
