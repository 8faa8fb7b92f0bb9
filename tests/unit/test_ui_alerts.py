"""When the critical alert banner shows and sounds (ui.alerts.decide): at once for a new alert,
again every RADIANT_TRIAGE_REALERT_S while unacknowledged, and back after "Remind me later"."""

from __future__ import annotations

import pytest

from appliance.config import Settings
from ui.alerts import BannerState, decide

REALERT = 180.0


def test_a_new_alert_shows_and_sounds_then_sounds_again_while_open() -> None:
    state = BannerState()
    assert decide(state, ("a",), 0.0, REALERT) == (True, True)
    assert decide(state, ("a",), 5.0, REALERT) == (False, False)
    assert decide(state, ("a",), 179.0, REALERT) == (False, False)
    assert decide(state, ("a",), 180.0, REALERT) == (False, True)  # re-raised
    assert decide(state, ("a", "b"), 185.0, REALERT) == (True, True)  # another one: at once


def test_remind_me_later_hides_it_until_the_interval_then_it_comes_back() -> None:
    state = BannerState()
    decide(state, ("a",), 0.0, REALERT)
    state.snoozed_until, state.shown = 10.0 + REALERT, ()  # what "Remind me later" does
    assert decide(state, ("a",), 60.0, REALERT) == (False, False)
    assert decide(state, ("a",), 10.0 + REALERT, REALERT) == (True, True)


def test_a_new_alert_breaks_through_a_snooze() -> None:
    state = BannerState()
    decide(state, ("a",), 0.0, REALERT)
    state.snoozed_until, state.shown = 1000.0, ()
    assert decide(state, ("a", "b"), 20.0, REALERT) == (True, True)


def test_the_interval_has_a_default_and_limits() -> None:
    assert Settings().triage_realert_s == 180
    for bad in (29, 3601):
        with pytest.raises(ValueError, match="triage_realert_s"):
            Settings(triage_realert_s=bad)
