"""The node's page without a server or a browser (Starlette's test client): who may see what, CSRF on every form,
the clinical form's checks and audit line, retry, health and metrics, and the refusal to bind beyond loopback
without users. The end-to-end run in a real browser is tests/serving/test_node_page_browser.py."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from collat_client.apps.cli import main as cli  # noqa: E402
from collat_client.apps.node import Node, NodeConfig  # noqa: E402
from collat_client.apps.web.app import SECURITY_HEADERS, WebConfig, create_app  # noqa: E402
from collat_client.apps.web.auth import (  # noqa: E402
    Credentials,
    LoginThrottle,
    Sessions,
    check_password,
    hash_password,
    read_users,
    write_user,
)
from collat_client.apps.web.metrics import PrometheusObserver  # noqa: E402
from collat_client.apps.web.server import WebServer  # noqa: E402
from collat_client.apps.web.views import queue_depths  # noqa: E402
from collat_client.errors import InvalidInput  # noqa: E402

PASSWORD = "a long enough password"


def _receive(node: Node, work: Path, name: str) -> str:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.AccessionNumber = generate_uid(), f"ACC-{name[:3]}"
    ds.PatientName, ds.PatientID = name, name[:8]
    path = work / f"{name}.dcm"
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return node.spool.store(ds.StudyInstanceUID, ds.SOPInstanceUID, path.read_bytes())


@pytest.fixture
def node(tmp_path):
    holder: list[Node] = []
    observer = PrometheusObserver(lambda: queue_depths(holder[0]))
    node = Node(NodeConfig(work=tmp_path / "work", send_to="PACS@127.0.0.1:104", ask_clinical=True), observer=observer)
    holder.append(node)
    waiting, failed = _receive(node, tmp_path, "Waiting^Patient"), _receive(node, tmp_path, "Failed^Patient")
    for study in node.spool.promote_quiet(0.0, now=time.time() + 1):
        state = study.load()
        if study.key == waiting:
            state.waiting_for_clinical = True
            study.save(state)
        else:
            node.spool.fail(study, "no perfusion series and no DWI with its ADC in the study")
    node.keys = {"waiting": waiting, "failed": failed}
    return node


@pytest.fixture
def page(node):
    write_user(node.config.work / "users", "alice", PASSWORD)
    app = create_app(node, WebConfig(credentials=Credentials(users=read_users(node.config.work / "users"))))
    return TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)


def _csrf(response) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', response.text).group(1)


def _sign_in(page: TestClient) -> str:
    answer = page.post("/login", data={"csrf": _csrf(page.get("/login")), "user": "alice", "password": PASSWORD})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    return _csrf(page.get("/"))


def test_nothing_but_health_metrics_and_sign_in_without_a_session(page, node):
    waiting = node.keys["waiting"]
    for path in ("/", f"/studies/{waiting}"):
        answer = page.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert page.get(f"/studies/{waiting}/picture/collaterals.png").status_code == 401
    refused = page.post(f"/studies/{waiting}/clinical", data={"nihss": "10"})
    assert refused.status_code == 403 and "Waiting" not in refused.text
    assert "Waiting^Patient" not in page.get("/login").text
    health = page.get("/healthz")  # the DICOM listener is not started here
    assert health.status_code == 503 and health.json()["dicom_listening"] is False
    assert health.json()["queue"] == {"receiving": 0, "queued": 0, "waiting_for_clinical": 1}
    metrics = page.get("/metrics").text
    assert 'collat_node_queue_depth{state="waiting_for_clinical"} 1.0' in metrics
    assert "collat_node_studies_received_total 2.0" not in metrics  # promoted by hand, not by the node's loop


def test_every_answer_carries_the_security_headers(page, node):
    for answer in (page.get("/login"), page.get("/"), page.get("/healthz"), page.get("/studies/nope"),
                   page.post("/login", data={})):
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value, (answer.request.url, name)
        assert "server" not in answer.headers or "uvicorn" not in answer.headers["server"]
    cookie = TestClient(page.app, base_url="http://127.0.0.1").get("/login").headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert TestClient(page.app, base_url="http://evil.example").get("/login").status_code == 400  # loopback names


def test_sign_in_needs_the_forms_token_and_the_password_and_slows_guessing(page):
    token = _csrf(page.get("/login"))
    assert page.post("/login", data={"user": "alice", "password": PASSWORD}).status_code == 403
    assert page.post("/login", data={"csrf": "forged", "user": "alice", "password": PASSWORD}).status_code == 403
    wrong = page.post("/login", data={"csrf": token, "user": "alice", "password": "guess"})
    assert wrong.status_code == 401 and "Wrong user name or password." in wrong.text
    assert page.post("/login", data={"csrf": token, "user": "mallory", "password": PASSWORD}).status_code == 401
    before = page.cookies["collat_session"]
    csrf = _sign_in(page)
    assert page.cookies["collat_session"] != before  # a fresh session at sign-in
    listed = page.get("/")
    assert listed.status_code == 200 and "Waiting, Patient" in listed.text and "Failed, Patient" in listed.text
    out = page.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303 and page.get("/").status_code == 303
    for _ in range(5):  # a sign-in forgave the earlier failures; five more in five minutes block the address
        page.post("/login", data={"csrf": _csrf(page.get("/login")), "user": "alice", "password": "guess"})
    blocked = page.post("/login", data={"csrf": _csrf(page.get("/login")), "user": "alice", "password": PASSWORD})
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text


def test_the_clinical_form_is_checked_written_once_and_audited(page, node):
    waiting, csrf = node.keys["waiting"], _sign_in(page)
    form = {"nihss": "12", "age": "70", "side": "left", "onset": "95"}
    assert "waiting for clinical inputs" in page.get(f"/studies/{waiting}").text
    forged = page.post(f"/studies/{waiting}/clinical", data=form)
    assert forged.status_code == 403 and "token" in forged.text
    for field, value, message in (("nihss", "99", "nihss must be an integer 0-42, got 99"),
                                  ("nihss", "ten", "NIHSS must be a number, got &#39;ten&#39;"),
                                  ("nihss", "", "NIHSS is needed"), ("age", "7", "age must be 18-120 years, got 7"),
                                  ("side", "middle", "side must be left, right, bilateral or unknown"),
                                  ("onset", "-5", "onset_to_imaging_min must be a non-negative number")):
        bad = page.post(f"/studies/{waiting}/clinical", data={**form, field: value, "csrf": csrf})
        assert bad.status_code == 400 and message in bad.text, (field, value)
    assert not (node.config.clinical_folder / f"{waiting}.json").exists()
    entered = page.post(f"/studies/{waiting}/clinical", data={**form, "csrf": csrf})
    assert entered.status_code == 303
    assert json.loads((node.config.clinical_folder / f"{waiting}.json").read_text()) == \
        {"nihss": 12, "age": 70.0, "side": "left", "onset_to_imaging_min": 95.0}
    audit = (node.config.work / "audit.log").read_text().splitlines()[-1]
    assert audit.endswith(f'clinical inputs entered user="alice" from=testclient study="{waiting}" nihss=12 '
                          'age=70.0 side="left" onset_min=95.0')
    failed = page.post(f"/studies/{node.keys['failed']}/clinical", data={**form, "csrf": csrf})
    assert failed.status_code == 404  # only a study waiting in the queue takes clinical inputs
    assert page.get("/studies/..%2F..%2Fetc").status_code == 404


def test_a_failed_study_is_retried_from_the_page(page, node):
    failed, csrf = node.keys["failed"], _sign_in(page)
    shown = page.get(f"/studies/{failed}").text
    assert "no perfusion series and no DWI with its ADC" in shown and 'id="retry"' in shown
    assert page.post(f"/studies/{failed}/retry", data={}).status_code == 403
    assert page.post(f"/studies/{failed}/retry", data={"csrf": csrf}).status_code == 303
    assert (node.config.work / "queue" / failed / "input").is_dir()
    state = json.loads((node.config.work / "queue" / failed / "state.json").read_text())
    assert state["attempts"] == 0 and "retried" in state["events"]
    assert f'retry user="alice" from=testclient study="{failed}"' in (node.config.work / "audit.log").read_text()


def test_sessions_expire_when_idle_and_after_their_longest_life():
    sessions = Sessions(idle_seconds=60, max_seconds=3600)
    sid, session = sessions.new(user="alice")
    assert sessions.get(sid, now=session.created + 59) is session
    assert sessions.get(sid, now=session.created + 59 + 61) is None  # idle too long: gone
    sid, session = sessions.new(user="alice")
    for minute in range(1, 61):
        assert sessions.get(sid, now=session.created + 59 * minute) is not None or minute * 59 > 3600
    assert sessions.get(sid, now=session.created + 3601) is None
    throttle = LoginThrottle(attempts=2, window=10)
    throttle.failed("a", now=0)
    throttle.failed("a", now=1)
    assert throttle.blocked("a", now=5) and not throttle.blocked("a", now=12) and not throttle.blocked("b", now=5)


def test_users_are_stored_as_scrypt_hashes_and_a_bad_file_is_refused(tmp_path):
    users = tmp_path / "users"
    write_user(users, "alice", PASSWORD)
    write_user(users, "bob", "another long password")
    write_user(users, "alice", "alice's new password")
    stored = read_users(users)
    assert set(stored) == {"alice", "bob"} and users.stat().st_mode & 0o777 == 0o600
    assert check_password("alice's new password", stored["alice"]) and not check_password(PASSWORD, stored["alice"])
    assert hash_password(PASSWORD) != hash_password(PASSWORD)  # salted
    assert Credentials(users=stored).check("bob", "another long password")
    assert not Credentials(users=stored).check("carol", "another long password")
    assert Credentials(token="t0k3n").check("night.registrar", "t0k3n")
    assert not Credentials(token="t0k3n").check("", "t0k3n")
    users.write_text("alice:plain-text-password\n")
    with pytest.raises(ValueError, match="users:1: not a 'name:scrypt"):
        read_users(users)
    with pytest.raises(ValueError, match="a user name is letters"):
        write_user(users, "al ice", PASSWORD)


def test_the_page_is_not_bound_beyond_loopback_without_users(node, tmp_path):
    with pytest.raises(InvalidInput, match="--web-host 0.0.0.0: the page would be reachable beyond this machine"):
        WebServer(node, WebConfig(host="0.0.0.0", credentials=Credentials(token="t")))
    result = CliRunner().invoke(cli, ["listen", "--send-to", "PACS@127.0.0.1:104", "--work", str(tmp_path / "w"),
                                      "--web-port", "0", "--web-host", "0.0.0.0"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "give it users (--web-users FILE" in result.stderr and "Traceback" not in result.output
    short = CliRunner().invoke(cli, ["web-user", "bob", "--users", str(tmp_path / "u"), "--password", "short"])
    assert short.exit_code == 2 and "at least 12 characters" in short.stderr
