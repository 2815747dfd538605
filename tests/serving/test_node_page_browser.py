"""The stroke team's page on the DICOM node, in a real browser (Debian's headless Chromium through Selenium), on
the real server and node: sign-in (a wrong password refused), a phantom study sent by storescu appears, its
collaterals reach the PACS at once, the study waits for its NIHSS, a bad NIHSS and a form without its CSRF token
are refused, the NIHSS entered starts the diffusion analysis, the result shows and the PACS receives its SEG.
Screenshots of each page go to build/screenshots/node-page/ (the README shows one)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from dicom_writer import write_enhanced, write_mosaic, write_phantom_study
from pacs_peers import RecordingPacs

from collat_ensemble.phantom import generate_case
from collat_ensemble.server.launcher import free_port

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots" / "node-page"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="no chromium/chromedriver (apt-get install chromium chromium-driver; "
                                       "make pacs-peers does it as root)")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                 "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # Debian's driver: nothing downloaded
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(predicate, seconds: float, what: str, log: Path):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; node log:\n{log.read_text()[-3000:]}")


def _shot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, max(700, min(int(height) + 40, 2400)))
    driver.save_screenshot(str(SCREENSHOTS / name))
    driver.set_window_size(1280, 1000)


def _text(driver, element_id: str, wait: float = 0.0) -> str:
    """The element's text; with ``wait``, once it is on the page (a submitted form's answer may still be loading)."""
    from selenium.webdriver.common.by import By

    deadline = time.time() + wait
    while True:
        found = driver.find_elements(By.ID, element_id)
        if found or time.time() >= deadline:
            return found[0].text if found else ""
        time.sleep(0.1)


def test_the_stroke_team_signs_in_enters_the_nihss_and_sees_the_result(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.ui import Select, WebDriverWait

    case = generate_case(5, space="native", side="left")
    study = write_phantom_study(tmp_path / "study", case, diffusion_writer=write_enhanced, syntax=None,
                                perfusion_writer=write_mosaic)
    users, work, log = tmp_path / "web-users", tmp_path / "work", tmp_path / "node.log"
    cli = str(Path(sys.executable).with_name("collat-client"))
    short = subprocess.run([cli, "web-user", "alice", "--users", str(users), "--password", "short"],
                           capture_output=True, text=True)
    assert short.returncode != 0 and "at least 12 characters" in short.stderr and not users.exists()
    subprocess.run([cli, "web-user", "alice", "--users", str(users), "--password", PASSWORD], check=True,
                   capture_output=True)
    assert users.stat().st_mode & 0o077 == 0 and PASSWORD not in users.read_text()

    port, web = free_port(), free_port()
    page = f"http://127.0.0.1:{web}"
    with RecordingPacs(tmp_path / "pacs") as pacs, open(log, "ab") as node_log:
        node = subprocess.Popen([cli, "listen", "--port", str(port), "--ae-title", "NODE", "--send-to", pacs.peer,
                                 "--work", str(work), "--quiet", "1", "--url", server.http_url, "--allow-ae",
                                 "SCANNER", "--web-port", str(web), "--web-users", str(users)],
                                stdout=node_log, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: "listening as NODE" in log.read_text(), 60, "the node to listen", log)
            anonymous = httpx.get(f"{page}/", follow_redirects=False)
            assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
            assert "PHANTOM" not in httpx.get(f"{page}/login").text
            assert httpx.get(f"{page}/healthz").json()["status"] == "ok"

            browser.get(f"{page}/")  # redirected to sign in
            assert browser.current_url.endswith("/login")
            _shot(browser, "1-sign-in.png")
            browser.find_element(By.ID, "user-name").send_keys("alice")
            browser.find_element(By.ID, "password").send_keys("wrong password")
            browser.find_element(By.ID, "sign-in").click()
            assert _text(browser, "error", wait=10) == "Wrong user name or password."
            browser.find_element(By.ID, "user-name").clear()
            browser.find_element(By.ID, "user-name").send_keys("alice")
            browser.find_element(By.ID, "password").send_keys(PASSWORD)
            browser.find_element(By.ID, "sign-in").click()
            assert _text(browser, "user", wait=10) == "alice" and "No studies yet" in _text(browser, "empty")

            sent = subprocess.run([sys.executable, "-m", "pynetdicom", "storescu", "127.0.0.1", str(port),
                                   str(study), "-r", "-aec", "NODE", "-aet", "SCANNER", "-cx"],
                                  capture_output=True, text=True, timeout=120)
            assert sent.returncode == 0, sent.stderr[-1000:]

            def listed_waiting():
                browser.get(f"{page}/")
                return "waiting for clinical inputs" in _text(browser, "studies")
            _wait(listed_waiting, 300, "the study to wait for its NIHSS, collaterals sent", log)
            listed = _text(browser, "studies")
            assert "PHANTOM-0001" in listed and "Phantom, Test" in listed  # identity for the signed-in user
            _shot(browser, "2-studies.png")
            collaterals = dict(pacs.received)
            classes = {pydicom.dcmread(str(p), stop_before_pixels=True).SOPClassUID
                       for p in (tmp_path / "pacs").glob("*.dcm")}
            assert len(collaterals) == 5 * 20 + 2 and SEG not in classes  # maps, report, summary: no SEG yet

            browser.find_element(By.CSS_SELECTOR, "#studies a").click()
            assert _text(browser, "state", wait=10) == "waiting for clinical inputs"
            key = browser.current_url.rsplit("/", 1)[-1]
            assert browser.find_element(By.ID, "result-collaterals").is_displayed()

            cookie = {"collat_session": browser.get_cookie("collat_session")["value"]}
            forged = httpx.post(f"{page}/studies/{key}/clinical", cookies=cookie,
                                data={"nihss": "10", "age": "45", "side": "left"})
            assert forged.status_code == 403 and "token" in forged.text
            assert not (work / "clinical").exists()

            browser.find_element(By.ID, "nihss").send_keys("99")
            browser.find_element(By.ID, "enter-clinical").click()
            assert _text(browser, "error", wait=10) == "nihss must be an integer 0-42, got 99"
            _shot(browser, "3-bad-nihss.png")
            browser.find_element(By.ID, "nihss").clear()
            browser.find_element(By.ID, "nihss").send_keys(str(case.nihss))
            browser.find_element(By.ID, "age").send_keys(f"{case.age:g}")
            Select(browser.find_element(By.ID, "side")).select_by_value("left")
            button = browser.find_element(By.ID, "enter-clinical")
            button.click()
            WebDriverWait(browser, 30).until(staleness_of(button))  # the POST answered before we navigate on

            def diffusion_shown():
                browser.get(f"{page}/studies/{key}")
                return _text(browser, "state") == "sent" and _text(browser, "core")
            _wait(diffusion_shown, 300, "the diffusion result", log)
            _shot(browser, "4-result.png")
            core = float(_text(browser, "core").split()[0])
            assert core > 0 and browser.find_element(By.ID, "result-diffusion").is_displayed()
            assert "target mismatch" in _text(browser, "defuse3") or "withheld" in _text(browser, "defuse3")
            _wait(lambda: len(pacs.received) == len(collaterals) + 3, 60, "the SEG, report and summary", log)
            assert max(pacs.received.values()) == 1  # nothing twice

            audit = (work / "audit.log").read_text()
            assert 'signed in user="alice"' in audit and 'sign-in refused user="alice"' in audit
            assert f'clinical inputs entered user="alice" from=127.0.0.1 study="{key}" nihss={case.nihss}' in audit
            metrics = httpx.get(f"{page}/metrics").text
            assert 'collat_node_studies_analysed_total{analysis="collaterals"} 1.0' in metrics
            assert 'collat_node_studies_analysed_total{analysis="diffusion"} 1.0' in metrics
            assert "collat_node_studies_sent_total 2.0" in metrics
            assert 'collat_node_stage_seconds_count{stage="waiting_for_clinical"} 1.0' in metrics
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(30)
    assert "ERROR" not in log.read_text()
