"""Patient schemas. ``patient_id`` is the MRN (DICOM PatientID, PS3.3 C.7.1.1); ``id`` is ours."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PHONE = re.compile(r"^[0-9+().\- ]{3,32}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _plain(value: str) -> str:
    value = value.strip()
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _mrn(value: str) -> str:
    value = _plain(value)
    # PatientID is LO: at most 64 characters, no backslash (PS3.5 6.2).
    if not value or len(value) > 64 or "\\" in value:
        raise ValueError("must be 1 to 64 characters without backslash")
    return value


def _name(value: str) -> str:
    value = _plain(value)
    # A PN component group is at most 64 characters; ^ = \ separate components (PS3.5 6.2).
    if not value or len(value) > 64 or any(ch in value for ch in "^=\\"):
        raise ValueError("must be 1 to 64 characters without ^, = or \\")
    return value


def _birth_date(value: date) -> date:
    if value > date.today():
        raise ValueError("must not be in the future")
    if value.year < 1880:
        raise ValueError("must be after 1880")
    return value


def _phone(value: str) -> str:
    value = _plain(value)
    if not _PHONE.match(value):
        raise ValueError("must be 3 to 32 digits, spaces or + ( ) . -")
    return value


def _email(value: str) -> str:
    value = _plain(value)
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("must be an e-mail address")
    return value


def _address(value: str) -> str:
    value = value.strip()
    if len(value) > 256 or re.search(r"[\x00-\x09\x0b-\x1f\x7f]", value):
        raise ValueError("must be at most 256 characters without control characters")
    return value


MRN = Annotated[str, AfterValidator(_mrn)]
Name = Annotated[str, AfterValidator(_name)]
BirthDate = Annotated[date, AfterValidator(_birth_date)]
Phone = Annotated[str, AfterValidator(_phone)]
Email = Annotated[str, AfterValidator(_email)]
Address = Annotated[str, AfterValidator(_address)]
Sex = Literal["M", "F", "O"]


class PatientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_id: MRN = Field(description="Medical record number (DICOM PatientID), unique per site")
    first_name: Name
    last_name: Name
    birth_date: BirthDate | None = None
    sex: Sex | None = Field(default=None, description="DICOM PatientSex: M, F or O")
    phone: Phone | None = None
    email: Email | None = None
    address: Address | None = None


class PatientUpdate(BaseModel):
    """Fields to change; omitted fields stay, ``null`` clears an optional one."""

    model_config = ConfigDict(extra="forbid")

    patient_id: MRN | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    birth_date: BirthDate | None = None
    sex: Sex | None = None
    phone: Phone | None = None
    email: Email | None = None
    address: Address | None = None

    @model_validator(mode="after")
    def _something(self) -> PatientUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        for required in ("patient_id", "first_name", "last_name"):
            if required in self.model_fields_set and getattr(self, required) is None:
                raise ValueError(f"{required} cannot be cleared")
        return self


class PatientOut(BaseModel):
    id: str
    patient_id: str
    first_name: str | None
    last_name: str | None
    birth_date: date | None
    sex: Sex | None
    phone: str | None
    email: str | None
    address: str | None
    source: Literal["manual", "dicom"]
    demographics_conflict: bool
    created_at: str
    updated_at: str


class PatientPage(BaseModel):
    items: list[PatientOut]
    total: int
    limit: int
    offset: int


class StudySummary(BaseModel):
    id: str
    study_uid: str
    study_date: str | None
    study_time: str | None
    accession_number: str | None
    description: str | None
    modalities: str | None
    status: str
    instance_count: int
    created_at: str


class PatientHistory(BaseModel):
    patient: PatientOut
    studies: list[StudySummary] = Field(description="Imaging studies, newest first")
