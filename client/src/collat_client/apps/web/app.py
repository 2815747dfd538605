"""The node's page (Starlette, server-rendered, no script): studies as they arrive and their state, the clinical
form a waiting study needs, each result, a retry for a failed study; ``/healthz`` and ``/metrics`` for operations.

Everything but ``/healthz``, ``/metrics`` and the sign-in page needs a signed-in session (patient identity included);
every form carries its session's CSRF token; every clinical input, sign-in and retry is an audit line with who and
from where. Headers follow OWASP's secure-headers project: a strict CSP (no script at all), no framing, no sniffing,
no referrer, no caching of pages that name patients.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from collat_contract.clinical import NIHSS_MAX, NIHSS_MIN, SIDES, ClinicalInputError, check_clinical

from ..node import Node, clinical_path
from ..spool import FAILED, QUEUE, write_atomic
from .auth import Credentials, LoginThrottle, Session, Sessions, csrf_ok
from .metrics import PrometheusObserver
from .views import StudyView, all_studies, queue_depths, study_view

HERE = Path(__file__).parent
COOKIE = "collat_session"
KEY = re.compile(r"^[0-9a-f]{16}(-[0-9]+)*$")  # a spool key: never a path
PICTURE = re.compile(r"^[a-z+]+\.png$")
CRITERIA = {"core_le_70ml": "core \u2264 70 mL", "ratio_ge_1_8": "mismatch ratio \u2265 1.8",
            "mismatch_ge_15ml": "mismatch \u2265 15 mL"}
audit = logging.getLogger("collat.audit")

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    credentials: Credentials | None = None
    session_minutes: float = 15.0
    tls: bool = False  # served over HTTPS (cookies Secure, HSTS)
    refresh_seconds: int = 5  # the study list reloads itself


class SecurityHeaders:
    """ASGI middleware: the same headers on every response, errors included."""

    def __init__(self, app, tls: bool) -> None:
        self.app, self.tls = app, tls

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if self.tls:
                    headers["strict-transport-security"] = "max-age=31536000; includeSubDomains"
            await send(message)

        await self.app(scope, receive, with_headers)


class AuditLog:
    """One line per clinical input, sign-in and retry: to WORK/audit.log (appended, synced) and the node's log."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, what: str, user: str, request: Request, **details: object) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        fields = " ".join(f"{k}={json.dumps(v)}" for k, v in details.items())
        line = f"{stamp} {what} user={json.dumps(user)} from={_client(request)} {fields}".rstrip()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        audit.info(line)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def create_app(node: Node, config: WebConfig) -> Starlette:
    credentials = config.credentials or Credentials()
    sessions = Sessions(idle_seconds=config.session_minutes * 60)
    throttle = LoginThrottle()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["clock"] = lambda t: time.strftime("%H:%M:%S", time.localtime(t)) if t else ""
    templates.env.filters["person"] = lambda name: ", ".join(p for p in str(name or "").split("^") if p)
    observer = node.observer if isinstance(node.observer, PrometheusObserver) else None
    log_audit = AuditLog(node.config.work / "audit.log")

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def signed_in(request: Request) -> Session | None:
        session = session_of(request)
        return session if session is not None and session.user else None

    def page(request: Request, name: str, session: Session | None, status: int = 200, **context) -> Response:
        return templates.TemplateResponse(request, name, {"session": session, "token_mode": credentials.token
                                                          is not None, "criteria": CRITERIA, **context},
                                          status_code=status)

    def with_cookie(response: Response, sid: str) -> Response:
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=config.tls, path="/")
        return response

    def refuse(request: Request, session: Session | None, status: int, message: str) -> Response:
        return page(request, "message.html", session, status=status, message=message)

    async def login_page(request: Request) -> Response:
        session = session_of(request)
        if session is not None and session.user:
            return RedirectResponse("/", status_code=303)
        if session is None:
            sid, session = sessions.new()
            return with_cookie(page(request, "login.html", session), sid)
        return page(request, "login.html", session)

    async def login(request: Request) -> Response:
        session = session_of(request)
        form = await request.form()
        if not csrf_ok(session, form.get("csrf")):
            return refuse(request, None, 403, "The sign-in form had expired or did not come from this page: "
                                              "open the page again.")
        address = _client(request)
        if throttle.blocked(address):
            return page(request, "login.html", session, status=429,
                        error="Too many failed sign-ins from this address: wait five minutes.")
        name, password = str(form.get("user", "")).strip(), str(form.get("password", ""))
        if not credentials.check(name, password):
            throttle.failed(address)
            log_audit("sign-in refused", name, request)
            return page(request, "login.html", session, status=401, error="Wrong user name or password.")
        throttle.succeeded(address)
        sessions.end(request.cookies.get(COOKIE))  # a fresh session id at sign-in: no fixation
        sid, _ = sessions.new(user=name)
        log_audit("signed in", name, request)
        return with_cookie(RedirectResponse("/", status_code=303), sid)

    async def logout(request: Request) -> Response:
        session = signed_in(request)
        form = await request.form()
        if not csrf_ok(session, form.get("csrf")):
            return refuse(request, session, 403, "The form did not carry this session's token.")
        sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def studies(request: Request) -> Response:
        session = signed_in(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        return page(request, "studies.html", session, studies=all_studies(node), refresh=config.refresh_seconds,
                    node=node.config)

    def found(key: str):
        return node.spool.find(key) if KEY.match(key) else None

    def study_page(request: Request, session: Session, view: StudyView, status: int = 200, error: str | None = None,
                   entered: dict[str, str] | None = None) -> Response:
        live = view.state in ("queued", "analysing", "retrying") and error is None
        return page(request, "study.html", session, status=status, study=view, sides=SIDES,
                    nihss_range=(NIHSS_MIN, NIHSS_MAX), refresh=config.refresh_seconds if live else 0, error=error,
                    entered=entered or {})

    async def study(request: Request) -> Response:
        session = signed_in(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        located = found(request.path_params["key"])
        if located is None:
            return refuse(request, session, 404, "No such study on this node.")
        return study_page(request, session, study_view(node, *located))

    async def picture(request: Request) -> Response:
        if signed_in(request) is None:
            return PlainTextResponse("sign in first", status_code=401)
        located, name = found(request.path_params["key"]), request.path_params["name"]
        path = located[1].folder / "view" / name if located is not None and PICTURE.match(name) else None
        if path is None or not path.is_file():
            return PlainTextResponse("no such picture", status_code=404)
        return FileResponse(path, media_type="image/png")

    async def study_form(request: Request, where: str, missing: str):
        """A study form's checks: signed in, its CSRF token, a study in ``where``; -> (session, form, study) or the
        refusal to send."""
        session = signed_in(request)
        form = await request.form()
        if session is None:
            return refuse(request, None, 403, "Sign in first.")
        if not csrf_ok(session, form.get("csrf")):
            return refuse(request, session, 403, "The form did not carry this session's token: open the study again.")
        located = found(request.path_params["key"])
        if located is None or located[0] != where:
            return refuse(request, session, 404, missing)
        return session, form, located[1]

    async def enter_clinical(request: Request) -> Response:
        checked = await study_form(request, QUEUE, "No such study waiting on this node.")
        if isinstance(checked, Response):
            return checked
        session, form, queued = checked
        view = study_view(node, QUEUE, queued)
        entered = {k: str(form.get(k, "")).strip() for k in ("nihss", "age", "side", "onset")}
        try:
            clinical = check_clinical({"nihss": _number(entered["nihss"], "NIHSS", required=True),
                                       "age": _number(entered["age"], "age"),
                                       "side": entered["side"] or "unknown",
                                       "onset_to_imaging_min": _number(entered["onset"], "onset to imaging")})
        except ClinicalInputError as exc:
            return study_page(request, session, view, status=400, error=str(exc), entered=entered)
        if view.state != "waiting_for_clinical":
            return refuse(request, session, 409, "This study is not waiting for clinical inputs.")
        path = clinical_path(node.config, view.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({k: v for k, v in clinical.items() if k != "dwi_b_value"}).encode())
        log_audit("clinical inputs entered", session.user, request, study=view.key, nihss=clinical["nihss"],
                  age=clinical["age"], side=clinical["side"], onset_min=clinical["onset_to_imaging_min"])
        return RedirectResponse(f"/studies/{view.key}", status_code=303)

    async def retry(request: Request) -> Response:
        checked = await study_form(request, FAILED, "No such failed study on this node.")
        if isinstance(checked, Response):
            return checked
        session, _, failed = checked
        try:
            node.spool.retry(failed.key)
        except OSError as exc:  # already queued again, or its images are gone
            return refuse(request, session, 409, str(exc))
        log_audit("retry", session.user, request, study=failed.key)
        return RedirectResponse(f"/studies/{failed.key}", status_code=303)

    async def healthz(request: Request) -> Response:
        age = time.time() - node.heartbeat
        limit = 2 * node.config.timeout + 60  # one analysis may hold the loop for up to its request timeout
        healthy = node.listening and age < limit
        return JSONResponse({"status": "ok" if healthy else "failing", "dicom_listening": node.listening,
                             "loop_seconds_since_turn": round(age, 1), "queue": queue_depths(node)},
                            status_code=200 if healthy else 503)

    async def metrics(request: Request) -> Response:
        if observer is None:
            return PlainTextResponse("metrics are off", status_code=404)
        return Response(generate_latest(observer.registry), media_type=CONTENT_TYPE_LATEST)

    async def stylesheet(request: Request) -> Response:
        return FileResponse(HERE / "static" / "style.css", media_type="text/css")

    middleware = [Middleware(SecurityHeaders, tls=config.tls)]
    if is_loopback(config.host):  # a page on loopback answers only to loopback names (no DNS rebinding)
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]",
                                                                                 "::1"]))
    return Starlette(routes=[
        Route("/", studies), Route("/login", login_page), Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]), Route("/studies/{key}", study),
        Route("/studies/{key}/picture/{name}", picture),
        Route("/studies/{key}/clinical", enter_clinical, methods=["POST"]),
        Route("/studies/{key}/retry", retry, methods=["POST"]),
        Route("/healthz", healthz), Route("/metrics", metrics), Route("/static/style.css", stylesheet),
    ], middleware=middleware)


def _number(text: str, what: str, required: bool = False) -> float | int | None:
    """A form field as a number (the contract then checks its range); empty is 'not given'."""
    if not text:
        if required:
            raise ClinicalInputError(f"{what} is needed")
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ClinicalInputError(f"{what} must be a number, got {text!r}")
    return int(value) if value == int(value) else value
