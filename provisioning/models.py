"""Schemas of provisioning: the first-boot answers, the enrollment bundle's fields, the outcome.

Answer names are the same in ``--answers FILE.json``, in a bundle (``remote`` and ``settings``
objects) and, with dashes, as ``radiant provision`` flags. :data:`ANSWER_SETTINGS` says which
``RADIANT_*`` setting each answer becomes in ``<data_dir>/provisioned.env``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from appliance.config import Mode

ENROLLMENT_FORMAT = "radiant-enrollment/1"

# answer -> Settings field (written as RADIANT_<FIELD> to provisioned.env)
ANSWER_SETTINGS: dict[str, str] = {
    "site_name": "site_name",
    "timezone": "timezone",
    "language": "language",
    "report_language": "report_language",
    "dicom_ae_title": "dicom_ae_title",
    "dicom_port": "dicom_port",
    "mode": "mode",
    "remote": "sync_remote",
    "bucket": "sync_bucket",
    "prefix": "sync_prefix",
    "endpoint": "sync_endpoint",
    "region": "sync_region",
    "access_key": "sync_access_key",
    "secret_key": "sync_secret_key",
    "azure_account": "sync_azure_account",
    "azure_key": "sync_azure_key",
    "inference_endpoint": "ai_online_endpoint",
}
SECRET_ANSWERS = frozenset({"access_key", "secret_key", "azure_key"})
REMOTE_ANSWERS = frozenset(
    {
        "remote",
        "bucket",
        "prefix",
        "endpoint",
        "region",
        "access_key",
        "secret_key",
        "azure_account",
        "azure_key",
    }
)
# What an enrollment bundle may pre-fill besides the remote.
BUNDLE_SETTINGS = frozenset(
    {
        "site_name",
        "timezone",
        "language",
        "report_language",
        "dicom_ae_title",
        "dicom_port",
        "mode",
        "inference_endpoint",
        "admin_username",
    }
)


class Answers(BaseModel):
    """Everything first boot asks; the admin's password is never part of it (stdin or file)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    site_name: str = Field(min_length=1, max_length=64)
    timezone: str = "UTC"
    language: str = "en"
    # Language of generated report text; omitted: the screen language above.
    report_language: str | None = None
    admin_username: str
    admin_full_name: str | None = Field(default=None, max_length=128)
    dicom_ae_title: str = "RADIANT"
    dicom_port: int = 11112
    mode: Mode | None = None  # default: online with a remote, else offline
    remote: str = ""
    bucket: str = ""
    prefix: str = ""
    endpoint: str = ""
    region: str = ""
    access_key: str = ""
    secret_key: str = ""
    azure_account: str = ""
    azure_key: str = ""
    inference_endpoint: str = ""
    device_name: str | None = Field(default=None, max_length=64)
    fleet_public_key: str | None = None


class ProvisionResult(BaseModel):
    device_id: str
    device_name: str | None
    public_key: str
    site_name: str
    admin_username: str
    mode: Mode
    remote: str
    fleet_key_fingerprint: str | None
    registered: bool  # device.json written to the bucket
    tls_fingerprint: str | None = None  # SHA-256 of the certificate the box serves
    warnings: list[str]
