"""The running services of one appliance process, by type.

:mod:`appliance.bootstrap` (the composition root) builds one :class:`Services` per process; the
web app keeps it, routes receive its parts through the typed dependencies of
:mod:`appliance.dependencies`, the screens through :mod:`ui.runtime`. Replication, the fleet
agent and the audit checkpoints live in higher layers (``sync``, ``provisioning``): this module
names only what the domain layer calls on them (:class:`Replication`, :class:`Background`), so
nothing here imports upward.

There is one way to queue work: :attr:`Services.jobs` (``JobRunner.enqueue``) writes the job
row in its own transaction and wakes a worker when the runner is started; before start-up (or
in a process that does not run workers) the row waits for the runner that will.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ai.engines.base import Engine
from appliance.config import Settings
from appliance.context import AppContext
from appliance.dicom.media import MediaWatcher
from appliance.dicom.receiver import Receiver
from appliance.integrations.pacs import PacsRetrier
from appliance.jobs.runner import JobRunner
from appliance.studies.stability import StabilityMonitor

EngineFactory = Callable[[], Engine]
"""Builds the engine the next model call uses (the local one, or the online one in online
mode); nothing is loaded or contacted until the call."""


class Background(Protocol):
    """A worker thread the process starts after recovery and stops at shutdown."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Replication(Background, Protocol):
    """Replication to the hospital's bucket (``sync.manager.SyncManager``)."""

    def wake(self) -> None:
        """Look at the mode and the queue now (after a mode switch)."""


@dataclass
class Services:
    """Everything a running appliance holds, built once (see :mod:`appliance.bootstrap`)."""

    ctx: AppContext
    jobs: JobRunner
    stability: StabilityMonitor
    receiver: Receiver
    media_watcher: MediaWatcher
    pacs_retrier: PacsRetrier
    sync: Replication
    fleet: Background
    checkpoints: Background
    engines: EngineFactory
    tls_active: bool = False
    #: Critical alert notifications to the hospital; None when no webhook is configured.
    notifier: Background | None = None

    @property
    def settings(self) -> Settings:
        return self.ctx.settings
