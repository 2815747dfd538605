"""A caller tells "try again later" from "this input is wrong" by class, and the DICOM node retries by that class
alone (no server, no network: the node's client is a stand-in that fails as told)."""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import collat_client.errors as errors
from collat_client.apps.node import Node, NodeConfig, default_work_folder
from collat_client.sdk.transport.base import GRPC_ERRORS, HTTP_ERRORS

TRANSIENT = {"ServerUnavailable", "QueueFull", "ModelNotReady", "InferenceTimeout", "ServerError", "PeerUnavailable"}
PERMANENT = {"InputFileError", "InvalidInput", "QualityRefused", "PeerRefused"}


def _leaves() -> dict[str, type]:
    return {name: cls for name, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.CollatError) and cls not in
            (errors.CollatError, errors.TransientError, errors.PermanentError, errors.PeerError)}


def test_every_error_is_either_transient_or_permanent():
    leaves = _leaves()
    assert set(leaves) == TRANSIENT | PERMANENT
    for name, cls in leaves.items():
        assert issubclass(cls, errors.TransientError) == (name in TRANSIENT), name
        assert issubclass(cls, errors.PermanentError) == (name in PERMANENT), name
    assert errors.PeerRefused.exit_code == errors.PeerUnavailable.exit_code == 5  # both still a PACS problem
    assert issubclass(errors.QualityRefused, errors.InvalidInput) and errors.QualityRefused.exit_code == 2


@pytest.mark.parametrize("status, transient", [(400, False), (404, True), (413, False), (429, True), (500, True),
                                               (503, True), (504, True), (422, False)])
def test_a_server_status_lands_on_the_branch_it_means(status, transient):
    kind = HTTP_ERRORS[status]
    assert issubclass(kind, errors.TransientError) is transient
    assert issubclass(kind, errors.PermanentError) is not transient
    assert issubclass(GRPC_ERRORS["RESOURCE_EXHAUSTED"], errors.QueueFull)


def test_a_b_value_outside_the_trained_range_is_a_quality_refusal():
    from collat_client.imaging.diffusion import check_b_value

    with pytest.raises(errors.QualityRefused, match="dwi.nii: the DWI's highest b-value is 2000"):
        check_b_value(2000.0, "dwi.nii", False)


def _queued_study(work: Path, failure: Exception):
    """A received study as the node's spool holds it (one instance with its identity), and a node whose client
    fails with ``failure``."""

    def client():
        raise failure

    node = Node(NodeConfig(work=work, send_to="PACS@127.0.0.1:104", report_failures=False, max_attempts=3),
                client_factory=client)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.AccessionNumber = generate_uid(), "ACC-1"
    path = work / "one.dcm"
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    node.spool.store(ds.StudyInstanceUID, ds.SOPInstanceUID, path.read_bytes())
    [study] = node.spool.promote_quiet(0.0, now=time.time() + 1)
    return node, study


@pytest.mark.parametrize("failure, outcome", [
    (errors.ServerUnavailable("127.0.0.1:8000: cannot connect"), "retry"),
    (errors.QueueFull("stroke_triage: queue full"), "retry"),
    (errors.PeerUnavailable("DICOM peer PACS@h:104: no association"), "retry"),
    (errors.InvalidInput("scan.nii: too few frames"), "failed"),
    (errors.PeerRefused("DICOM peer PACS@h:104: rejected the association"), "failed"),
])
def test_the_node_retries_transient_failures_and_fails_permanent_ones(tmp_path, failure, outcome):
    node, study = _queued_study(tmp_path, failure)
    assert node.process(study) == outcome
    if outcome == "retry":
        state = study.load()
        assert state.attempts == 1 and state.last_error == str(failure) and state.next_try > time.time()
    else:
        assert (tmp_path / "failed" / study.key / "reason.txt").read_text() == f"{failure}\n"


def test_the_node_gives_up_on_a_transient_failure_after_its_attempts(tmp_path):
    node, study = _queued_study(tmp_path, errors.ServerUnavailable("down"))
    outcomes = [node.process(study, now=time.time() + 10_000 * n) for n in range(3)]
    assert outcomes == ["retry", "retry", "failed"]
    assert "gave up after 3 attempts: down" in (tmp_path / "failed" / study.key / "reason.txt").read_text()


def test_the_node_keeps_its_work_in_a_state_directory_not_where_it_was_started(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_work_folder() == tmp_path / "state" / "collat" / "node"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_work_folder() == tmp_path / "home" / ".local" / "state" / "collat" / "node"
