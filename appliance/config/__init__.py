"""Settings of the appliance: ``RADIANT_*`` environment variables (and an optional ``.env``),
one settings group per subsystem (this package's modules, and :mod:`ai.settings` for the model
engines) composed into one :class:`Settings`.

Every field is documented in ``.env.example``. Invalid values stop start-up with one line
naming the variable (see :func:`load_settings`).
"""

from appliance.config.base import ENV_PREFIX, ConfigError, Mode, Port
from appliance.config.dicom import Peer, parse_peers, valid_ae_title
from appliance.config.files import SECRET_KEY_FILE, ensure_secret_key, prepare_data_dir
from appliance.config.fleet import check_software_channel, check_timezone
from appliance.config.replication import (
    SYNC_REMOTES,
    check_sync_bucket,
    check_sync_prefix,
    check_sync_remote,
)
from appliance.config.settings import (
    DATA_DIR_ENV_FILES,
    Settings,
    data_dir_env_files,
    load_settings,
)

__all__ = [
    "DATA_DIR_ENV_FILES",
    "ENV_PREFIX",
    "SECRET_KEY_FILE",
    "SYNC_REMOTES",
    "ConfigError",
    "Mode",
    "Peer",
    "Port",
    "Settings",
    "check_software_channel",
    "check_sync_bucket",
    "check_sync_prefix",
    "check_sync_remote",
    "check_timezone",
    "data_dir_env_files",
    "ensure_secret_key",
    "load_settings",
    "parse_peers",
    "prepare_data_dir",
    "valid_ae_title",
]
