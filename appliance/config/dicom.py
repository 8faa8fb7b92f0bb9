"""DICOM intake: the receiver (PS3.8 associations, limits, peers, TLS), media and web upload,
DICOMweb, and when a series counts as stable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from appliance.config.base import ENV_PREFIX, Port, blank_is_unset
from appliance.config.web import check_host


@dataclass(frozen=True)
class Peer:
    """A DICOM node the appliance may send to (C-MOVE destination, PACS)."""

    ae_title: str
    host: str
    port: int


def valid_ae_title(title: str) -> bool:
    """An AE value (PS3.5 6.2): 1-16 characters of the default repertoire, no backslash, no
    control characters, not only spaces (leading and trailing spaces are not significant)."""
    stripped = title.strip(" ")
    return 1 <= len(stripped) <= 16 and all(" " <= ch <= "~" and ch != "\\" for ch in stripped)


def parse_peers(value: str) -> dict[str, Peer]:
    """``AE@host:port`` entries separated by commas; the AE title names the peer."""
    peers: dict[str, Peer] = {}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        ae, at, address = entry.partition("@")
        host, colon, port = address.rpartition(":")
        if not at or not colon or not ae.strip() or not host:
            raise ValueError(f"peer {entry!r} must look like AE_TITLE@host:port")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"peer {entry!r} has an invalid port")
        if not valid_ae_title(ae.strip()):
            raise ValueError(f"peer {entry!r} has an invalid AE title (1-16 characters)")
        peers[ae.strip()] = Peer(ae.strip(), host.strip("[]"), int(port))
    return peers


def _names(value: str) -> frozenset[str]:
    return frozenset(a.strip() for a in value.split(",") if a.strip())


class DicomSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    dicom_host: str = "0.0.0.0"  # noqa: S104 (the receiver serves the clinic's network)
    dicom_port: Port = 11112
    dicom_ae_title: str = "RADIANT"
    dicom_overwrite: bool = False
    stable_age_s: Annotated[float, Field(ge=1, le=86_400)] = 30.0
    min_free_gb: Annotated[float, Field(ge=0, le=100_000)] = 5.0
    dicom_peers: str = ""
    dicom_allowed_aets: str = ""
    dicom_allowed_ips: str = ""
    # native: our own Upper Layer front end for storage, Q/R relayed to pynetdicom; pynetdicom: all
    dicom_frontend: Literal["native", "pynetdicom"] = "native"
    # Who may do what (issue 14): Q/R only for RADIANT_DICOM_PEERS (AE title and address);
    # storage open unless restricted; the called AE title must be ours.
    dicom_check_called_aet: bool = True
    dicom_store_peers_only: bool = False
    # Starvation limits (PS3.8 9.1.5 ARTIM; established associations only count to the limit)
    dicom_max_associations: Annotated[int, Field(ge=1, le=1000)] = 25
    dicom_artim_s: Annotated[float, Field(ge=0.1, le=600)] = 10.0
    dicom_idle_s: Annotated[float, Field(ge=0.1, le=86_400)] = 60.0
    dicom_max_pending: Annotated[int, Field(ge=1, le=10_000)] = 100
    dicom_max_pending_per_ip: Annotated[int, Field(ge=1, le=10_000)] = 10
    # Largest data set one C-STORE may carry (MiB); larger is answered 0xA700, audited
    dicom_max_object_mb: Annotated[int, Field(ge=1, le=1 << 20)] = 4096
    # Quarantine quotas: beyond either, the files seen longest ago are evicted (audited)
    quarantine_max_mb: Annotated[int, Field(ge=1, le=1 << 20)] = 1024
    quarantine_max_files: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    # DICOM TLS (PS3.15 Annex B): a second listener with the certificate of tls_cert/tls_key
    dicom_tls_port: Port | None = None
    # client certificates on the DICOM TLS port: none, peers (Q/R needs one), all (required)
    dicom_tls_client_ca: Path | None = None
    dicom_tls_verify_clients: Literal["none", "peers", "all"] = "none"
    media_roots: str = "/media,/run/media,/mnt"
    # DICOMweb (appliance/dicomweb): a user's reads of one series within this window are one
    # audited view, however many frames a viewer fetches
    dicomweb_audit_window_s: Annotated[float, Field(ge=1, le=86_400)] = 600.0
    # WADO-RS metadata of studies/series kept encoded per series version (least recently used
    # series dropped beyond this many MB; 0 keeps none)
    dicomweb_metadata_cache_mb: Annotated[int, Field(ge=0, le=1 << 16)] = 64

    @field_validator("dicom_ae_title")
    @classmethod
    def _dicom_ae_title(cls, value: str) -> str:
        # PS3.5 6.2: AE is 1-16 characters of the default repertoire, no backslash or controls;
        # leading/trailing spaces are not significant.
        title = value.strip()
        if not 1 <= len(title) <= 16:
            raise ValueError("must be 1 to 16 characters")
        if any(ch == "\\" or not (" " <= ch <= "~") for ch in title):
            raise ValueError("must be printable ASCII without backslash")
        return title

    @field_validator("dicom_host")
    @classmethod
    def _dicom_host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("dicom_peers")
    @classmethod
    def _dicom_peers(cls, value: str) -> str:
        parse_peers(value)
        return value

    @field_validator("dicom_tls_port", "dicom_tls_client_ca", mode="before")
    @classmethod
    def _dicom_blank_none(cls, value: Any) -> Any:
        return blank_is_unset(value)

    @field_validator("dicom_tls_verify_clients")
    @classmethod
    def _dicom_verify_clients(cls, value: str, info: ValidationInfo) -> str:
        if value != "none" and info.data.get("dicom_tls_client_ca") is None:
            raise ValueError(
                f"needs {ENV_PREFIX}DICOM_TLS_CLIENT_CA (the CA of the peers' certificates)"
            )
        return value

    @property
    def peers(self) -> dict[str, Peer]:
        return parse_peers(self.dicom_peers)

    @property
    def allowed_aets(self) -> frozenset[str]:
        return _names(self.dicom_allowed_aets)

    @property
    def allowed_ips(self) -> frozenset[str]:
        return _names(self.dicom_allowed_ips)

    @property
    def media_root_paths(self) -> list[Path]:
        return [Path(p.strip()) for p in self.media_roots.split(",") if p.strip()]
