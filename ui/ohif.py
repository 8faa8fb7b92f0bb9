"""OHIF (the ``@ohif/app`` npm package's prebuilt ``dist/``) served by the box at ``/ohif/``.

The touch viewer keeps ``/viewer/{study}``, so OHIF lives under ``/ohif/`` on the same origin:
its pages, workers and DICOMweb calls share the screen's session cookie and the CSP's origin.
OHIF's build assumes it is served at ``/``: the webpack public path of the bundles and workers
(``__webpack_require__.p = "/"``), ``window.PUBLIC_URL`` and the ``href``/``src`` of
``index.html`` and the font URL of ``app.bundle.css`` are rewritten to ``/ohif/`` once, into
``<data_dir>/cache/ohif/<version>/`` (the package's own files are never changed). ``app-config.js``
is ours (:func:`app_config`): the box's own ``/dicom-web``, nothing fetched from the internet.
A study with a prior opens beside it (:func:`study_url`, OHIF's compare hanging protocol).
Static files need no sign-in (they hold no patient data); OHIF's pages send a visitor without
a screen session to the sign-in screen, and its DICOMweb reads carry that session's cookie.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from appliance.config import Settings
from ui import session

PREFIX = "/ohif"
VERSION = "3.13.2"
_PUBLIC_PATH = re.compile(rb'__webpack_require__\.p = "/"')
_REWRITE_SUFFIXES = (".js", ".css", ".html")
_lock = threading.Lock()


def default_dist() -> Path:
    """Where ``./just ohif`` unpacks the pinned package: ``.cache/ohif/<version>/dist``."""
    return Path(__file__).resolve().parents[1] / ".cache" / "ohif" / VERSION / "dist"


#: OHIF's hanging protocol for two studies side by side: the first of ``StudyInstanceUIDs``
#: on the left, the second (the prior) on the right (1x2, or 2x2 with two series each).
COMPARE_PROTOCOL = "@ohif/hpCompare"


def study_url(study_uid: str, prior_uid: str | None = None) -> str:
    """OHIF's basic viewer on one study; with ``prior_uid``, the study beside its prior."""
    if prior_uid is None or prior_uid == study_uid:
        return f"{PREFIX}/viewer?StudyInstanceUIDs={quote(study_uid)}"
    return (
        f"{PREFIX}/viewer?StudyInstanceUIDs={quote(study_uid)},{quote(prior_uid)}"
        f"&hangingprotocolId={quote(COMPARE_PROTOCOL)}"
    )


def app_config() -> str:
    """OHIF's configuration: one DICOMweb data source, the box's own, same origin."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "radiant",
        "configuration": {
            "friendlyName": "RadiantAI",
            "name": "radiant",
            "wadoUriRoot": "/wado",
            "qidoRoot": "/dicom-web",
            "wadoRoot": "/dicom-web",
            "qidoSupportsIncludeField": False,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
            "staticWado": False,
            "singlepart": "bulkdata,video",
            "omitQuotationForMultipartRequest": True,
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
        },
    }
    config = {
        "routerBasename": PREFIX,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 10},
        "defaultDataSourceName": "radiant",
        "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


def rewrite(name: str, data: bytes) -> bytes:
    """The file with every root-relative reference moved under :data:`PREFIX`."""
    prefix = PREFIX.encode() + b"/"
    if name.endswith(".html"):
        data = data.replace(b'window.PUBLIC_URL="/"', b'window.PUBLIC_URL="' + prefix + b'"')
        data = data.replace(b'href="/', b'href="' + prefix).replace(b'src="/', b'src="' + prefix)
        return data.replace(b'content="/assets', b'content="' + prefix + b"assets")
    if name.endswith(".css"):
        return data.replace(b"url(/", b"url(" + prefix)
    return _PUBLIC_PATH.sub(b'__webpack_require__.p = "' + prefix + b'"', data)


class Ohif:
    """Serves one unpacked OHIF ``dist/`` under :data:`PREFIX`."""

    def __init__(self, dist: Path, cache: Path) -> None:
        self.dist = dist.resolve()
        self.cache = cache

    def available(self) -> bool:
        return (self.dist / "index.html").is_file()

    def _file(self, relative: str) -> Path | None:
        if not relative or "\x00" in relative or "\\" in relative:
            return None
        path = (self.dist / relative).resolve()
        if not path.is_relative_to(self.dist) or not path.is_file():
            return None
        return path

    def _served(self, relative: str, path: Path) -> Path:
        """``path`` itself, or its rewritten copy (made once) when it refers to the root."""
        if not relative.endswith(_REWRITE_SUFFIXES):
            return path
        target = self.cache / relative
        if target.is_file():
            return target
        data = path.read_bytes()
        changed = rewrite(relative, data)
        if changed == data:
            return path
        with _lock:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".tmp-{target.name}")
            partial.write_bytes(changed)
            os.replace(partial, target)
        return target

    async def serve(self, request: Request) -> Response:
        relative = str(request.path_params.get("path", ""))
        if not self.available():
            return PlainTextResponse(
                "The diagnostic viewer (OHIF) is not installed on this appliance: run ./just ohif",
                status_code=503,
            )
        headers = {"X-Content-Type-Options": "nosniff"}
        if relative == "app-config.js":
            return Response(app_config(), media_type="text/javascript", headers=headers)
        found = self._file(relative)
        if found is not None and relative != "index.html":
            media = "application/wasm" if relative.endswith(".wasm") else None
            return FileResponse(self._served(relative, found), media_type=media, headers=headers)
        # a page of the single-page app: only for a signed-in screen session
        if session.request_user_id(request) is None:
            return RedirectResponse("/login", status_code=303)
        index = self._served("index.html", self.dist / "index.html")
        return FileResponse(
            index, media_type="text/html", headers={**headers, "Cache-Control": "no-store"}
        )


def install(app: FastAPI, settings: Settings) -> None:
    """Add the ``/ohif`` routes (before the screens' own)."""
    dist = settings.ohif_dir or default_dist()
    server = Ohif(dist, settings.data_dir / "cache" / "ohif" / VERSION)
    app.router.routes.append(Route(PREFIX, lambda _r: RedirectResponse(f"{PREFIX}/")))
    app.router.routes.append(
        Route(PREFIX + "/{path:path}", server.serve, methods=["GET", "HEAD"])
    )
