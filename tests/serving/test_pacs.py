"""Results back to PACS, with real peers on loopback: the SEG, the measurement report and the colour captures of a
DICOM phantom study reach Orthanc from ``infer --to`` (C-STORE) and ``send`` (STOW-RS); failures name the peer
and its status; the DICOM node receives studies sent with pynetdicom's storescu and, with the inference server
killed and restarted under it (and the node itself killed and restarted), delivers every result exactly once."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from click.testing import CliRunner
from dicom_writer import restamp_study, write_enhanced, write_mosaic, write_phantom_study
from pacs_peers import NOT_INSTALLED, ORTHANC, Orthanc, RecordingPacs
from test_dicom_study import assert_seg_is_the_nifti_masks

from collat_client.apps.cli import main as cli
from collat_client.dicom.results import REPORT_FILE, SEG_FILE, SUMMARY_FILE
from collat_ensemble.phantom import generate_case
from collat_ensemble.server.launcher import TritonServer, free_port

SEG, SR, SC = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.7"
needs_orthanc = pytest.mark.skipif(ORTHANC is None, reason=NOT_INSTALLED)


@pytest.fixture(scope="module")
def case():
    return generate_case(5, space="native", side="left")


@pytest.fixture(scope="module")
def study(case, tmp_path_factory):
    """Perfusion as Siemens mosaics (a file per frame) and an enhanced DWI: a whole study in 70 files."""
    return write_phantom_study(tmp_path_factory.mktemp("pacs") / "study", case, diffusion_writer=write_enhanced,
                               syntax=None, perfusion_writer=write_mosaic)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    if ORTHANC is None:
        pytest.skip(NOT_INSTALLED)
    with Orthanc(tmp_path_factory.mktemp("orthanc")) as running:
        yield running


@pytest.fixture(scope="module")
def sent(server, orthanc, study, case, tmp_path_factory):
    """``collat-client infer STUDY --to ORTHANC``: its CLI result, output folder and the metrics it wrote."""
    out = tmp_path_factory.mktemp("sent") / "out"
    result = CliRunner().invoke(cli, ["infer", str(study), "--nihss", str(case.nihss), "--age", str(case.age),
                                      "--side", "left", "--out", str(out), "--to", orthanc.peer,
                                      "--url", server.http_url])
    return result, out, json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else None


def report_values(path: Path) -> dict[str, object]:
    """Every measurement (by concept meaning) and qualitative evaluation of a TID 1500 report, read back."""
    sr = hd.sr.srread(str(path))
    values: dict[str, object] = {}
    for group in sr.content.get_volumetric_roi_measurement_groups():
        for m in group.get_measurements():
            values[group.finding_type.meaning] = (m.value, m.unit.value)
        values[f"{group.finding_type.meaning} segment"] = group.referenced_segment.referenced_segment_numbers \
            if group.referenced_segment is not None else None
    for group in sr.content.get_image_measurement_groups():
        for m in group.get_measurements():  # a volume with no segment to point at is keyed by what it measures
            key = group.finding_type.meaning if m.name.meaning == "Volume" else m.name.meaning
            values[key] = (m.value, m.unit.value)
        for q in group.get_qualitative_evaluations():
            values[q.name.meaning] = q.value.meaning
    return values


@needs_orthanc
def test_infer_sends_seg_report_and_captures_to_the_pacs(sent, orthanc, study, tmp_path):
    result, out, metrics = sent
    assert result.exit_code == 0, result.output
    assert f"to {orthanc.peer}" in result.stderr
    instances = orthanc.instances()
    by_class = {uid: [i for i in instances if i["SOPClassUID"] == uid] for uid in (SEG, SR, SC)}
    depth = 20  # the phantom's perfusion slices: one capture per slice and phase, and the summary
    assert (len(by_class[SEG]), len(by_class[SR]), len(by_class[SC])) == (1, 1, 5 * depth + 1)
    assert len(instances) == len(list((out / "dicom").rglob("*.dcm")))
    source = pydicom.dcmread(str(next((study / "dwi" / "trace").glob("*.dcm"))), stop_before_pixels=True)
    assert {i["StudyInstanceUID"] for i in instances} == {source.StudyInstanceUID}  # new series in the same study
    assert {i["PatientID"] for i in instances} == {"PHANTOM-0001"}
    assert len({i["SeriesInstanceUID"] for i in instances}) == 8  # SEG, SR, summary, five phase series
    ids = orthanc.get("/instances")
    seg_id = next(i for i in ids if orthanc.get(f"/instances/{i}/simplified-tags")["SOPClassUID"] == SEG)
    (tmp_path / "seg.dcm").write_bytes(orthanc.file(seg_id))  # what the PACS holds, not what we wrote
    assert_seg_is_the_nifti_masks(tmp_path / "seg.dcm", out, study / "dwi" / "trace")

    values = report_values(out / "dicom" / REPORT_FILE)
    h, c = metrics["hypoperfusion"], metrics["collateral"]
    assert values["ADC core (ADC < 620e-6 mm2/s)"] == (pytest.approx(h["core_ml"], rel=1e-9), "ml")
    assert values["Predicted hypoperfusion lesion"] == (pytest.approx(h["hypoperfusion_ml"], rel=1e-9), "ml")
    assert values["ADC core (ADC < 620e-6 mm2/s) segment"] == [2]
    assert values["Predicted hypoperfusion lesion segment"] == [1]
    assert values["Mismatch volume"] == (pytest.approx(h["mismatch_ml"], rel=1e-9), "ml")
    assert values["Mismatch ratio"][0] == pytest.approx(h["mismatch_ratio"], rel=1e-9)
    assert values["Collateral perfusion score estimate (0-5)"][0] == c["cps_estimate"]
    decision = "Yes" if h["defuse3"]["eligible"] else "No"
    assert values["DEFUSE 3 target mismatch"] == decision


@needs_orthanc
def test_a_report_without_a_seg_still_carries_every_number(sent, study, tmp_path):
    """A mosaic DWI gets no SEG: the report then gives the volumes without a region (TID 1501)."""
    from collat_client.dicom.report import build_report
    from collat_client.schema import Metrics

    _, _, metrics = sent
    source = pydicom.dcmread(str(next(p for p in (study / "perf").rglob("*") if p.is_file())),
                             stop_before_pixels=True)
    build_report(Metrics.model_validate(metrics), [source], algorithm="collat", version="1",
                 research_only=True).save_as(str(tmp_path / "sr.dcm"))
    values, h = report_values(tmp_path / "sr.dcm"), metrics["hypoperfusion"]
    assert values["ADC core (ADC < 620e-6 mm2/s)"] == (pytest.approx(h["core_ml"], rel=1e-9), "ml")
    assert values["Predicted hypoperfusion lesion"] == (pytest.approx(h["hypoperfusion_ml"], rel=1e-9), "ml")
    assert "ADC core (ADC < 620e-6 mm2/s) segment" not in values


@needs_orthanc
def test_the_report_names_an_imported_networks_card(sent, study, tmp_path):
    """The SR's algorithm identification carries an imported network's version, preset and card digest."""
    from collat_client.dicom.report import build_report
    from collat_client.schema import Metrics

    _, _, metrics = sent
    metrics = {**metrics, "models": {**metrics["models"], "hypoperfusion_unet": {
        **metrics["models"]["hypoperfusion_unet"], "version": "2", "preset": "imported:keras-unet",
        "card_sha256": "c" * 64}}}
    source = pydicom.dcmread(str(next(p for p in (study / "perf").rglob("*") if p.is_file())),
                             stop_before_pixels=True)
    build_report(Metrics.model_validate(metrics), [source], algorithm="collat", version="2",
                 research_only=True).save_as(str(tmp_path / "sr.dcm"))
    texts = [str(e.value) for e in pydicom.dcmread(str(tmp_path / "sr.dcm")).iterall() if e.VR in ("UT", "LO", "ST")]
    assert f"hypoperfusion_unet v2 imported:keras-unet card {'c' * 64}" in texts


@needs_orthanc
def test_the_captures_show_the_maps_and_say_research_use(sent):
    _, out, metrics = sent
    summary = pydicom.dcmread(str(out / "dicom" / SUMMARY_FILE))
    assert summary.PhotometricInterpretation == "RGB" and summary.BurnedInAnnotation == "YES"
    assert summary.ContentQualification == "RESEARCH"  # the demo weights' model card says not for clinical use
    assert all(m["not_for_clinical_use"] is True for m in metrics["models"].values())
    pixels = summary.pixel_array
    assert pixels.shape[2] == 3 and pixels.std() > 10  # a picture, not a blank page
    slices = sorted((out / "dicom" / "collateral_arterial").glob("*.dcm"))
    first, middle = (pydicom.dcmread(str(p)) for p in (slices[0], slices[len(slices) // 2]))
    assert list(middle.PatientOrientation) == ["L", "P"] and middle.InstanceNumber == len(slices) // 2 + 1
    image = middle.pixel_array[22:-22, :-64]  # the map, between the text strips and left of the colour bar
    assert (image.max(axis=2) > 0).mean() > 0.2  # the brain coloured in
    bar = middle.pixel_array[22:-22, -56]
    assert bar[0].tolist() == [255, 255, 255] and bar[-1].tolist() == [0, 0, 0]  # +1 white at the top, -1 black
    assert first.SeriesInstanceUID == middle.SeriesInstanceUID and first.InstanceNumber == 1
    assert middle.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"  # RLE lossless: no ringing on colours


@pytest.mark.skipif(shutil.which("dcmdump") is None, reason="dcmtk's dcmdump is not installed (Debian: dcmtk)")
@needs_orthanc
def test_dcmtk_parses_every_object(sent):
    _, out, _ = sent
    for path in [out / "dicom" / name for name in (SEG_FILE, REPORT_FILE, SUMMARY_FILE)] + \
            sorted((out / "dicom" / "collateral_delay").glob("*.dcm"))[:2]:
        done = subprocess.run(["dcmdump", "-q", "-E", str(path)], capture_output=True, text=True)
        assert done.returncode == 0 and "E:" not in done.stderr, (path.name, done.stderr[-500:])


@needs_orthanc
def test_send_by_stow_rs_to_dicomweb(sent, tmp_path):
    _, out, _ = sent
    with Orthanc(tmp_path / "web") as web:
        result = CliRunner().invoke(cli, ["send", str(out / "dicom"), "--to", web.dicomweb])
        assert result.exit_code == 0, result.output
        assert len(web.get("/instances")) == len(list((out / "dicom").rglob("*.dcm")))


@needs_orthanc
def test_send_failures_name_the_peer_and_the_dicom_status(sent, orthanc, tmp_path):
    _, out, _ = sent
    closed = f"PACS@127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["send", str(out / "dicom" / SEG_FILE), "--to", closed])
    assert result.exit_code == 5 and f"DICOM peer {closed}: no association" in result.stderr
    wrong_ae = orthanc.peer.replace(orthanc.ae_title, "NOTORTHANC")
    result = CliRunner().invoke(cli, ["send", str(out / "dicom" / SEG_FILE), "--to", wrong_ae])
    assert result.exit_code == 5 and "rejected the association" in result.stderr
    with RecordingPacs(tmp_path / "full", status=0xA700) as full:
        result = CliRunner().invoke(cli, ["send", str(out / "dicom" / SEG_FILE), "--to", full.peer])
    assert result.exit_code == 5
    assert f"DICOM peer {full.peer}: C-STORE of {SEG_FILE} failed with status 0xA700 (failure: Refused: Out of " \
           "Resources)" in result.stderr
    result = CliRunner().invoke(cli, ["send", str(tmp_path), "--to", "PACS@host"])
    assert result.exit_code == 2 and "a DICOM peer is AE@HOST:PORT" in result.stderr


def _storescu(peer: RecordingPacs | str, folder: Path) -> None:
    ae, address = peer.split("@")
    host, port = address.split(":")
    done = subprocess.run([sys.executable, "-m", "pynetdicom", "storescu", host, port, str(folder), "-r",
                           "-aec", ae, "-aet", "SCANNER", "-cx"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]


def _node(work: Path, port: int, send_to: str, server_url: str, log: Path) -> subprocess.Popen:
    cli_path = Path(sys.executable).with_name("collat-client")
    return subprocess.Popen([str(cli_path), "listen", "--port", str(port), "--ae-title", "NODE", "--send-to", send_to,
                             "--work", str(work), "--quiet", "1", "--retry", "0.5", "--retry-max", "2",
                             "--nihss", "12", "--age", "70",
                             "--url", server_url, "--allow-ae", "SCANNER"],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _wait(predicate, seconds: float, what: str, log: Path) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; node log:\n{log.read_text()[-3000:]}")


def test_the_node_delivers_every_study_once_through_server_kills_and_node_restarts(cpu_repository, study, tmp_path):
    """The server is down when three studies arrive; the node is killed holding them and restarted; the server
    comes up, is killed after the first result, and comes back: every result arrives, none twice."""
    studies = []
    for n in range(3):
        copy = shutil.copytree(study, tmp_path / f"study{n}")
        studies.append(restamp_study(copy, patient_id=f"PHANTOM-10{n}", accession=f"ACC-10{n}"))
    work, log, port = tmp_path / "work", tmp_path / "node.log", free_port()
    http_port = free_port()
    with RecordingPacs(tmp_path / "pacs") as pacs:
        node = _node(work, port, pacs.peer, f"127.0.0.1:{http_port}", log)
        try:
            _wait(lambda: "listening as NODE" in log.read_text(), 60, "the node to listen", log)
            refused = subprocess.run([sys.executable, "-m", "pynetdicom", "storescu", "127.0.0.1", str(port),
                                      str(tmp_path / "study0"), "-r", "-aec", "NODE", "-aet", "INTRUDER"],
                                     capture_output=True, text=True, timeout=60)
            assert "rejected" in (refused.stdout + refused.stderr).lower()  # not on the --allow-ae list
            for n in range(3):  # the inference server is down: the node must hold all three
                _storescu(f"NODE@127.0.0.1:{port}", tmp_path / f"study{n}")
            _wait(lambda: len(list((work / "queue").glob("[!.]*"))) == 3 and log.read_text().count("retry") >= 3,
                  60, "three queued studies, each retried", log)
            node.send_signal(signal.SIGKILL)  # and the node dies too, holding them
            node.wait(30)
            assert not pacs.received
            node = _node(work, port, pacs.peer, f"127.0.0.1:{http_port}", log)
            server = TritonServer(cpu_repository, http_port=http_port, log_file=tmp_path / "server1.log").start()
            try:
                _wait(lambda: any((work / "done").iterdir()), 300, "the first study done", log)
            finally:
                server.stop(grace=0)  # killed while the node still holds the others
            assert list((work / "queue").glob("[!.]*")), "the server was killed too late to test anything"
            retries = log.read_text().count("retry")
            _wait(lambda: log.read_text().count("retry") > retries, 60, "a retry after the kill", log)
            with TritonServer(cpu_repository, http_port=http_port, log_file=tmp_path / "server2.log"):
                _wait(lambda: len(list((work / "done").iterdir())) == 3, 300, "three studies done", log)
            assert "3 unfinished studies from before the restart: picked up" in log.read_text()
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(30)
    per_study = pacs.per_study()
    assert set(per_study) == set(studies)
    assert len(set(per_study.values())) == 1 and next(iter(per_study.values())) == 5 * 20 + 3  # SEG, SR, captures
    assert max(pacs.received.values()) == 1  # none twice
    assert not list((work / "queue").iterdir()) and not list((work / "failed").iterdir())
    assert all(not (d / "input").exists() for d in (work / "done").iterdir())  # received images not kept


def test_a_study_the_node_cannot_use_is_answered_with_the_reason(tmp_path, case):
    """No server needed: the study is refused before inference (a DWI with no ADC and no perfusion)."""
    from dicom_writer import TRACE, write_classic

    write_classic(tmp_path / "bad" / "dwi", case.dwi[..., None].astype(float), case.diffusion_affine, number=7,
                  description="ep2d_diff_TRACEW", image_type=TRACE, b_values=[1000.0],
                  slope=float(case.dwi.max()) / 60000.0)
    work, log, port = tmp_path / "work", tmp_path / "node.log", free_port()
    with RecordingPacs(tmp_path / "pacs") as pacs:
        node = _node(work, port, pacs.peer, f"127.0.0.1:{free_port()}", log)
        try:
            _wait(lambda: "listening as NODE" in log.read_text(), 60, "the node to listen", log)
            _storescu(f"NODE@127.0.0.1:{port}", tmp_path / "bad")
            _wait(lambda: len(list((work / "failed").iterdir())) == 1 and pacs.received, 60, "the failure", log)
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(30)
        page = pydicom.dcmread(str(next((tmp_path / "pacs").glob("*.dcm"))))
    reason = next((work / "failed").iterdir()) / "reason.txt"
    assert "no perfusion series and no DWI with its ADC" in reason.read_text()
    assert "cannot be processed: no perfusion series and no DWI with its ADC" in log.read_text()
    assert page.SOPClassUID == SC and page.SeriesDescription == "collat: no result (see image)"
    assert page.PatientID == "PHANTOM-0001"  # answered into the study it came from
