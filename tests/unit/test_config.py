"""Settings: defaults, environment, one-line errors naming the variable, the secret key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from appliance.config import (
    ConfigError,
    Mode,
    ensure_secret_key,
    load_settings,
    prepare_data_dir,
)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("data")
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert (settings.dicom_port, settings.dicom_ae_title) == (11112, "RADIANT")
    assert settings.mode is Mode.OFFLINE
    assert settings.secret_key is None


def test_environment_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIANT_MODE", "online")
    monkeypatch.setenv("RADIANT_HTTP_PORT", "9000")
    monkeypatch.setenv("RADIANT_DICOM_AE_TITLE", " SCANNER1 ")
    settings = load_settings(http_port=9100, data_dir=None)
    assert settings.mode is Mode.ONLINE
    assert settings.http_port == 9100  # the override (CLI flag) wins over the environment
    assert settings.dicom_ae_title == "SCANNER1"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RADIANT_SITE_NAME=Clinique du Lac\n", encoding="utf-8")
    assert load_settings().site_name == "Clinique du Lac"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RADIANT_MODE", "hybrid", "offline"),
        ("RADIANT_HTTP_PORT", "70000", "65535"),
        ("RADIANT_HTTP_PORT", "eighty", "integer"),
        ("RADIANT_DICOM_PORT", "0", "greater than or equal to 1"),
        ("RADIANT_DICOM_AE_TITLE", "A_TITLE_THAT_IS_FAR_TOO_LONG", "16 characters"),
        ("RADIANT_DICOM_AE_TITLE", "BAD\\AE", "backslash"),
        ("RADIANT_SECRET_KEY", "short", "32 characters"),
        ("RADIANT_LOG_LEVEL", "loud", "debug, info"),
        ("RADIANT_DICOM_PEERS", "PACS@pacs.local", "AE_TITLE@host:port"),
        ("RADIANT_DICOM_PEERS", "PACS@pacs.local:99999", "invalid port"),
        ("RADIANT_DICOM_PEERS", "A_VERY_LONG_AE_TITLE_X@h:104", "invalid AE title"),
        ("RADIANT_MIN_FREE_GB", "-1", "greater than or equal to 0"),
        ("RADIANT_STABLE_AGE_S", "0", "greater than or equal to 1"),
        ("RADIANT_DICOM_OVERWRITE", "perhaps", "valid boolean"),
    ],
)
def test_bad_values_give_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"configuration error: {variable}: ")
    assert says in message


def test_secret_key_value_never_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIANT_SECRET_KEY", "tooshort-secret")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "tooshort-secret" not in str(caught.value)


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = load_settings(data_dir=blocker / "data")
    with pytest.raises(ConfigError) as caught:
        prepare_data_dir(settings)
    assert str(caught.value).startswith("configuration error: RADIANT_DATA_DIR: ")
    assert "not a writable directory" in str(caught.value)


def test_data_dir_is_private(tmp_path: Path) -> None:
    target = tmp_path / "shared"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    prepare_data_dir(load_settings(data_dir=target))
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_secret_key_generated_once_with_0600_and_reused(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    prepare_data_dir(settings)
    first = ensure_secret_key(settings)
    path = settings.data_dir / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert ensure_secret_key(settings) == first
    # another data dir gets another key: there is no built-in default
    other = load_settings(data_dir=tmp_path / "other")
    prepare_data_dir(other)
    assert ensure_secret_key(other) != first


def test_secret_key_file_with_loose_permissions_is_tightened(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    prepare_data_dir(settings)
    key = ensure_secret_key(settings)
    path = settings.data_dir / "secret_key"
    path.chmod(0o644)
    assert ensure_secret_key(settings) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_configured_secret_key_wins_and_no_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADIANT_SECRET_KEY", "k" * 40)
    settings = load_settings(data_dir=tmp_path / "data")
    prepare_data_dir(settings)
    assert ensure_secret_key(settings) == "k" * 40
    assert not (settings.data_dir / "secret_key").exists()


def test_damaged_secret_key_file_is_refused(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    prepare_data_dir(settings)
    (settings.data_dir / "secret_key").write_text("x\n")
    with pytest.raises(ConfigError, match="RADIANT_SECRET_KEY"):
        ensure_secret_key(settings)


def test_peers_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIANT_DICOM_PEERS", "PACS@10.1.2.3:104, VIEWER@[::1]:11113")
    peers = load_settings().peers
    assert set(peers) == {"PACS", "VIEWER"}
    assert (peers["PACS"].host, peers["PACS"].port) == ("10.1.2.3", 104)
    assert (peers["VIEWER"].host, peers["VIEWER"].port) == ("::1", 11113)
