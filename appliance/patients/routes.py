"""Patient endpoints. Everyone signed in reads; admins, radiologists and technicians write;
only admins delete."""

from __future__ import annotations

from typing import Annotated

import sqlite_utils
from fastapi import APIRouter, Depends, Query, Response, status

from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.dependencies import get_db
from appliance.paging import Limit, Offset
from appliance.patients import service
from appliance.patients.models import (
    PatientCreate,
    PatientHistory,
    PatientOut,
    PatientPage,
    PatientUpdate,
)

router = APIRouter(prefix="/api/patients", tags=["patients"])
Db = Annotated[sqlite_utils.Database, Depends(get_db)]
Writers = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN)
Readers = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN, Role.VIEWER)


@router.post("", response_model=PatientOut, status_code=status.HTTP_201_CREATED)
def create_patient(
    body: PatientCreate, actor: Annotated[Actor, Depends(Writers)], db: Db
) -> PatientOut:
    """Register a patient; 409 when the MRN exists."""
    return service.create(db, body, actor)


@router.get("", response_model=PatientPage)
def list_patients(
    actor: Annotated[Actor, Depends(Readers)],
    db: Db,
    search: Annotated[str | None, Query(max_length=128, description="name or MRN words")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> PatientPage:
    """Patients sorted by last name, first name, MRN; ``search`` matches every word."""
    return service.search(db, actor, text=search, limit=limit, offset=offset)


@router.get("/{patient_id}", response_model=PatientOut)
def get_patient(patient_id: str, actor: Annotated[Actor, Depends(Readers)], db: Db) -> PatientOut:
    return service.get(db, patient_id, actor)


@router.get("/{patient_id}/history", response_model=PatientHistory)
def patient_history(
    patient_id: str, actor: Annotated[Actor, Depends(Readers)], db: Db
) -> PatientHistory:
    """The patient's imaging studies, newest first."""
    return service.history(db, patient_id, actor)


@router.patch("/{patient_id}", response_model=PatientOut)
def update_patient(
    patient_id: str, body: PatientUpdate, actor: Annotated[Actor, Depends(Writers)], db: Db
) -> PatientOut:
    return service.update(db, patient_id, body, actor)


@router.delete("/{patient_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_patient(
    patient_id: str, actor: Annotated[Actor, Depends(Allow(Role.ADMIN))], db: Db
) -> Response:
    """Admin only; 409 while the patient has studies."""
    service.delete(db, patient_id, actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
