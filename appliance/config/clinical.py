"""The clinical work after intake: automatic volumes and analyses, what may go to the cloud,
triage, reports and sending them to a PACS (appliance/volumes, analysis, triage, export,
integrations/pacs.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from appliance.config.base import ENV_PREFIX, blank_is_unset


class ClinicalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    auto_volumes: bool = True
    # Reports and exports (appliance/export, appliance/integrations/pacs.py).
    report_page_size: Literal["A4", "LETTER"] = "A4"
    # Language of the text the appliance writes into reports and their exports (technique,
    # comparison, limitations, disclaimer, PDF titles): en or fr; a report may choose another.
    report_language: Literal["en", "fr"] = "en"
    report_font_path: Path | None = None
    pacs_timeout_s: Annotated[float, Field(ge=1, le=600)] = 30.0
    pacs_retry_base_s: Annotated[float, Field(ge=0.01, le=86_400)] = 30.0
    pacs_retry_max_s: Annotated[float, Field(ge=0.01, le=7 * 86_400)] = 3600.0
    pacs_retry_poll_s: Annotated[float, Field(ge=0.01, le=3600)] = 5.0
    # Radiographs with Burned In Annotation YES go to the cloud endpoint only when true (audited).
    ai_cloud_allow_burned_in: bool = False
    # Queue a primary analysis for every stable study (appliance/analysis).
    ai_auto: bool = False
    # Triage (ai/urgency.py): the site's critical findings list (JSON; the packaged one if unset).
    triage_critical_list: Path | None = None
    # Seconds after which an unacknowledged critical alert sounds again / comes back (ui/alerts).
    triage_realert_s: Annotated[int, Field(ge=30, le=3600)] = 180
    # Critical alerts to the hospital (appliance/triage/notify.py): a signed FHIR Communication
    # POSTed to this URL while online (HTTPS; plain HTTP only to this machine), HMAC-SHA256 with
    # the secret (16 bytes or more), retried until accepted, dropped after max age seconds.
    triage_webhook_url: str | None = None
    triage_webhook_secret: SecretStr | None = None
    triage_webhook_max_age_s: Annotated[int, Field(ge=600, le=7 * 86_400)] = 86_400

    @field_validator(
        "triage_critical_list",
        "report_font_path",
        "triage_webhook_url",
        "triage_webhook_secret",
        mode="before",
    )
    @classmethod
    def _clinical_blank_is_unset(cls, value: Any) -> Any:
        return blank_is_unset(value)

    @field_validator("triage_critical_list")
    @classmethod
    def _clinical_critical_list(cls, value: Path | None) -> Path | None:
        if value is not None:
            from ai.urgency import CriticalListError, load_critical_list

            try:
                load_critical_list(value)
            except CriticalListError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("triage_webhook_url")
    @classmethod
    def _clinical_webhook_url(cls, value: str | None) -> str | None:
        if value is not None:
            from appliance.triage.notify import check_url

            check_url(value)
        return value

    @field_validator("triage_webhook_secret")
    @classmethod
    def _clinical_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 16:
            raise ValueError("the webhook secret must be at least 16 bytes")
        return value

    @model_validator(mode="after")
    def _clinical_webhook_pair(self) -> Self:
        if self.triage_webhook_url and self.triage_webhook_secret is None:
            raise ValueError("RADIANT_TRIAGE_WEBHOOK_URL needs RADIANT_TRIAGE_WEBHOOK_SECRET")
        return self

    @field_validator("report_language", mode="before")
    @classmethod
    def _clinical_report_language(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("report_page_size", mode="before")
    @classmethod
    def _clinical_page_size(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value
