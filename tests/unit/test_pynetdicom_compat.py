"""The pynetdicom internals the receiver patches are still the ones it was written against.

These fail loudly when pynetdicom moves outside :data:`WRITTEN_FOR` or an internal the patches
replace changes shape: re-check each patch in ``appliance/dicom/pynetdicom_compat.py`` (and the
C-GET/C-MOVE tests of tests/integration/test_receiver.py) before widening the range.
"""

from __future__ import annotations

import inspect

import pynetdicom
import pytest
from pynetdicom import _config
from pynetdicom.association import Association, ServiceUser
from pynetdicom.dimse import DIMSEServiceProvider

from appliance.dicom.pynetdicom_compat import WRITTEN_FOR, configure_pynetdicom, version_supported


def test_installed_pynetdicom_is_the_version_the_patches_were_written_for() -> None:
    assert version_supported(), (
        f"pynetdicom {pynetdicom.__version__} is outside the range the receiver's patches were "
        f"written for ({WRITTEN_FOR[0]} to before {WRITTEN_FOR[1]}): re-check "
        "appliance/dicom/pynetdicom_compat.py against its source, then widen WRITTEN_FOR"
    )


@pytest.mark.parametrize(
    ("version", "supported"),
    [("3.0.0", True), ("3.0.4", True), ("3.1.0", False), ("2.0.2", False), ("4.0", False)],
)
def test_version_range_is_checked_on_major_and_minor(version: str, supported: bool) -> None:
    assert version_supported(version) is supported


def test_send_c_store_signature_is_the_one_stored_file_sender_replaces() -> None:
    params = list(inspect.signature(Association.send_c_store).parameters)
    assert params == ["self", "dataset", "msg_id", "priority", "originator_aet", "originator_id"]


def test_get_msg_signature_is_the_one_sender_takes_every_message_replaces() -> None:
    assert list(inspect.signature(DIMSEServiceProvider.get_msg).parameters) == ["self", "block"]


def test_service_user_attributes_prefer_receivers_syntaxes_uses() -> None:
    supported = inspect.getattr_static(ServiceUser, "supported_contexts")
    assert isinstance(supported, property) and supported.fset is not None
    for name in ("role_selection", "requested_contexts"):
        assert isinstance(inspect.getattr_static(ServiceUser, name), property), name


def test_configuration_switches_exist_and_are_set() -> None:
    names = (
        "LOG_HANDLER_LEVEL",
        "LOG_REQUEST_IDENTIFIERS",
        "LOG_RESPONSE_IDENTIFIERS",
        "STORE_RECV_CHUNKED_DATASET",
        "STORE_SEND_CHUNKED_DATASET",
    )
    saved = {name: getattr(_config, name) for name in names}
    try:
        configure_pynetdicom()
        assert _config.LOG_HANDLER_LEVEL == "none"
        assert _config.LOG_REQUEST_IDENTIFIERS is False
        assert _config.LOG_RESPONSE_IDENTIFIERS is False
        assert _config.STORE_RECV_CHUNKED_DATASET is False
        assert _config.STORE_SEND_CHUNKED_DATASET is True
    finally:
        for name, value in saved.items():
            setattr(_config, name, value)
