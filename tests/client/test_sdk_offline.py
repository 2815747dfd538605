"""The SDK without a server: wire format, input checks, DICOM reading, retries, atomic saving."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest
from pydantic import ValidationError

from collat_client.errors import CollatError, InputFileError, InvalidInput, ServerUnavailable
from collat_client.imaging.volumes import row_major_float32
from collat_client.schema import Clinical
from collat_client.sdk.client import _RetryPolicy
from collat_client.sdk.inputs import read_diffusion, read_perfusion
from collat_client.sdk.plan import plan_request
from collat_client.sdk.transport.base import Retryable, grpc_error, kserve_error_message
from collat_client.sdk.transport.kserve import decode_response, encode_request

AFFINE = np.diag([2.0, 2.0, 5.0, 1.0])


def write_nifti(path, data, affine=AFFINE, tr=None):
    image = nib.Nifti1Image(np.asarray(data), np.eye(4))
    image.set_sform(affine, code=1)  # the sform only, so that singular affines can be written as scanners do
    image.set_qform(None, code=0)
    if tr is not None:
        image.header.set_zooms(image.header.get_zooms()[:3] + (tr,))
        image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))
    return path


def series(frames=30, shape=(8, 8, 4)):
    rng = np.random.default_rng(0)
    return (100 + 10 * rng.random(shape + (frames,))).astype(np.float32)


def test_binary_request_and_response_round_trip():
    inputs = {"A": np.arange(6, dtype=np.float32).reshape(2, 3), "B": np.array([b"{\"x\": 1}"], dtype=object),
              "C": np.eye(4)}
    request = encode_request(inputs, ["A"])
    body, length = request.tobytes(), request.header_length
    assert b"".join(request.chunks(size=7)) == body and request.nbytes == len(body)
    inputs["A"][0, 0] = 42.0  # the body holds views of the arrays, not copies
    assert np.frombuffer(request.tobytes()[length: length + 4], np.float32)[0] == 42.0
    inputs["A"][0, 0] = 0.0
    header = json.loads(body[:length])
    assert [i["datatype"] for i in header["inputs"]] == ["FP32", "BYTES", "FP64"]
    assert header["inputs"][1]["parameters"]["binary_data_size"] == 4 + 8
    assert len(body) == length + 24 + 12 + 128
    # A response is laid out the same way: header, then the tensors in order.
    response_header = json.dumps({"outputs": [
        {"name": "A", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
        {"name": "B", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 12}}]}).encode()
    raw = response_header + inputs["A"].tobytes() + body[length + 24: length + 36]
    out = decode_response(raw, len(response_header))
    np.testing.assert_array_equal(out["A"], inputs["A"])
    assert out["B"][0] == b"{\"x\": 1}"
    assert gzip.decompress(gzip.compress(body)) == body


def test_clinical_is_validated_before_anything_is_sent():
    assert Clinical(nihss=10).side == "unknown"
    for bad in ({"nihss": -1}, {"nihss": 43}, {"nihss": 10, "age": 10}, {"nihss": 10, "side": "up"},
                {"nihss": 10, "patient_name": "X"}):
        with pytest.raises(ValidationError):
            Clinical.model_validate(bad)


@pytest.mark.parametrize("make, message", [
    (lambda d: write_nifti(d / "s.nii.gz", series()[..., 0]), "must be 4D"),
    (lambda d: write_nifti(d / "s.nii.gz", series(frames=3), tr=1.6), "too few frames: 3"),
    (lambda d: write_nifti(d / "s.nii.gz", np.where(np.arange(30) == 4, np.nan, series()), tr=1.6), "NaN"),
    (lambda d: write_nifti(d / "s.nii.gz", np.zeros((8, 8, 4, 30), np.float32), tr=1.6), "constant"),
    (lambda d: write_nifti(d / "s.nii.gz", series(), affine=np.diag([2.0, 2.0, 0.0, 1.0]), tr=1.6), "singular"),
    (lambda d: write_nifti(d / "s.nii.gz", series(), tr=0.0), "frame interval"),
])
def test_bad_perfusion_files_are_named_and_refused(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InvalidInput, match=message) as info:
        read_perfusion(path)
    assert str(path) in str(info.value)


def test_unreadable_files_raise_input_file_error(tmp_path):
    text = tmp_path / "notes.nii"
    text.write_text("this is not an image")
    truncated = write_nifti(tmp_path / "t.nii.gz", series(), tr=1.6)
    truncated.write_bytes(truncated.read_bytes()[:300])
    for path in (text, truncated, tmp_path / "missing.nii.gz"):
        with pytest.raises(InputFileError, match=str(path)):
            read_perfusion(path)


def test_dwi_and_adc_must_share_a_grid(tmp_path):
    dwi = write_nifti(tmp_path / "dwi.nii.gz", np.ones((10, 10, 10), np.float32))
    adc = write_nifti(tmp_path / "adc.nii.gz", np.ones((10, 10, 9), np.float32))
    with pytest.raises(InvalidInput, match="do not share a grid"):
        plan_request(dwi=dwi, adc=adc, clinical=Clinical(nihss=5))
    flipped = write_nifti(tmp_path / "adc2.nii.gz", np.ones((10, 10, 10), np.float32), affine=np.diag([-2, 2, 5, 1.0]))
    with pytest.raises(InvalidInput, match="different affines"):
        plan_request(dwi=dwi, adc=flipped, clinical=Clinical(nihss=5))
    with pytest.raises(InvalidInput, match="needs clinical data"):
        plan_request(dwi=dwi, adc=dwi)
    with pytest.raises(InvalidInput, match=r"dwi.nii.gz: no ADC: give one \(--adc\)"):
        plan_request(dwi=dwi)
    with pytest.raises(InvalidInput, match="both DWI and ADC"):
        plan_request(adc=dwi)


def test_the_pipeline_follows_from_the_inputs(tmp_path):
    perf = write_nifti(tmp_path / "p.nii.gz", series(), tr=1.6)
    vol = write_nifti(tmp_path / "d.nii.gz", np.ones((10, 10, 10), np.float32))
    assert plan_request(perfusion=perf).pipeline == "collateral_pipeline"
    assert plan_request(dwi=vol, adc=vol, clinical={"nihss": 3}).pipeline == "hypoperfusion_pipeline"
    plan = plan_request(perfusion=perf, dwi=vol, adc=vol, clinical={"nihss": 3, "side": "left"})
    assert plan.pipeline == "stroke_triage"
    tensors = plan.tensors
    assert json.loads(tensors["CLINICAL"][0]) == {"nihss": 3, "age": None, "side": "left",
                                                  "onset_to_imaging_min": None, "dwi_b_value": None}
    assert tensors["FRAME_SECONDS"].tolist() == [pytest.approx(1.6)]


# ------------------------------------------------------------------ DICOM


def test_dicom_series_gives_voxels_affine_and_frame_interval(tmp_path, corpus_module):
    volume = (np.arange(6 * 5 * 4 * 24, dtype=np.uint16).reshape(6, 5, 4, 24) % 977) + 10
    perfusion = read_perfusion(corpus_module.write_dicom_series(tmp_path / "s", volume, frames=24))
    # Through the affine, every voxel lands where the DICOM positions put it (LPS -> RAS: x and y negated).
    ijk = np.indices(volume.shape[:3]).reshape(3, -1)
    written = np.array([[-2, 0, 0, 0], [0, -2, 0, 0], [0, 0, 5, 0], [0, 0, 0, 1.0]])
    index = np.rint(np.linalg.inv(perfusion.affine) @ written @ np.vstack([ijk, np.ones(ijk.shape[1])])).astype(int)
    np.testing.assert_array_equal(perfusion.data[tuple(index[:3])], volume[tuple(ijk)].astype(np.float32))
    assert perfusion.frame_seconds == pytest.approx(1.5)


@pytest.mark.parametrize("setup, message", [
    (lambda d, w: d.mkdir() or d, "no DICOM files in this folder or below it"),
    (lambda d, w: w(d, np.arange(80, dtype=np.uint16).reshape(4, 4, 5), skip=2), "a missing slice"),
    (lambda d, w: w(w(d, np.ones((4, 4, 3), np.uint16), uid="1.1"), np.ones((4, 4, 3), np.uint16) * 2, uid="1.2"),
     "2 DWI candidates, choose one with --dwi-series"),
])
def test_bad_dicom_directories_are_named(tmp_path, setup, message, corpus_module):
    folder = setup(tmp_path / "series", corpus_module.write_dicom_series)
    with pytest.raises(CollatError, match=message) as info:
        read_diffusion(folder)
    assert str(folder) in str(info.value)


# ------------------------------------------------------------------ retries and errors


def test_retry_only_on_retryable_failures(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise Retryable("connection refused")
        return "ok"

    assert _RetryPolicy(3, 0.01).run(flaky) == "ok" and len(calls) == 3
    calls.clear()

    def refused():
        calls.append(1)
        raise InvalidInput("bad scan")

    with pytest.raises(InvalidInput):
        _RetryPolicy(3, 0.01).run(refused)
    assert len(calls) == 1, "a 400 must never be retried"
    with pytest.raises(ServerUnavailable, match="gave up after 2 attempts"):
        _RetryPolicy(1, 0.01).run(lambda: (_ for _ in ()).throw(Retryable("down")))


def test_backoff_is_jittered_and_grows():
    policy = _RetryPolicy(5, 1.0)
    delays = [policy.delay(2) for _ in range(50)]
    assert 2.0 <= min(delays) < max(delays) <= 6.0
    assert policy.delay(0) <= 1.5


def _mock_transports(status: int, body: bytes):
    """The SDK's sync and async HTTP transports talking to a stand-in that answers every request the same way."""
    import httpx

    from collat_client.sdk.transport.http import AsyncHttpTransport, HttpTransport

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

    return (HttpTransport("127.0.0.1:1", timeout=5.0, http_transport=httpx.MockTransport(handler)),
            AsyncHttpTransport("127.0.0.1:1", timeout=5.0, http_transport=httpx.MockTransport(handler)))


# The message deliberately contradicts the status: the type must follow the status code, never the words.
@pytest.mark.parametrize("status, error", [
    (400, "InvalidInput"), (404, "ModelNotReady"), (500, "ServerError"), (501, "ServerError"),
    (503, "Retryable"), (429, "Busy"), (504, "InferenceTimeout"), (502, "ServerError"), (418, "InvalidInput"),
])
def test_http_errors_are_typed_by_status_code_alike_in_sync_and_async(status, error):
    import asyncio

    body = json.dumps({"error": "unknown model: internal error, not ready\nsecond line"}).encode()
    sync, async_ = _mock_transports(status, body)
    calls = {
        "infer": (lambda: sync.infer("m", {"A": np.zeros(2, np.float32)}, ["B"], 5.0),
                  lambda: async_.infer("m", {"A": np.zeros(2, np.float32)}, ["B"], 5.0)),
        "model_config": (lambda: sync.model_config("m"), lambda: async_.model_config("m")),
    }
    for name, (call_sync, call_async) in calls.items():
        for run in (call_sync, lambda c=call_async: asyncio.run(c())):
            with pytest.raises(CollatError) as info:
                run()
            assert type(info.value).__name__ == error, name
            assert str(info.value) == f"m: unknown model: internal error, not ready (HTTP {status})"


def test_a_non_kserve_error_body_is_kept_as_the_message():
    assert kserve_error_message(b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    assert kserve_error_message(b'{"error": "too few frames: 5"}') == "too few frames: 5"
    assert kserve_error_message(b"") == "no message"


@pytest.mark.parametrize("code, error", [
    ("StatusCode.INVALID_ARGUMENT", "InvalidInput"), ("StatusCode.NOT_FOUND", "ModelNotReady"),
    ("StatusCode.UNAVAILABLE", "Retryable"), ("StatusCode.RESOURCE_EXHAUSTED", "Busy"),
    ("StatusCode.DEADLINE_EXCEEDED", "InferenceTimeout"), ("StatusCode.INTERNAL", "ServerError"),
    ("StatusCode.UNKNOWN", "ServerError"), ("UNIMPLEMENTED", "ServerError"),
])
def test_grpc_errors_are_typed_by_status_code(code, error):
    found = grpc_error(code, "invalid input: model not found", "m")
    assert type(found).__name__ == error
    assert str(found) == f"m: invalid input: model not found (gRPC {code.rsplit('.', 1)[-1]})"


def test_the_client_never_imports_torch_or_the_server_packages():
    import subprocess
    import sys

    code = ("import sys, collat_client, collat_client.apps.cli, collat_client.sdk.transport.http, collat_client.dicom; "
            "print(sorted(m for m in ('torch', 'collat_ensemble', 'collat_export', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_identifiers_in_nifti_headers_never_reach_a_request(tmp_path):
    """descrip / aux_file / intent_name may carry names and dates: none of it may be uploaded."""
    image = nib.Nifti1Image(series(), np.diag([2.0, 2.0, 5.0, 1.0]))
    image.header["descrip"] = b"DOE^JANE 19700101 MRN12345"
    image.header["aux_file"] = b"MRN12345"
    image.header["intent_name"] = b"DOE"
    image.header.set_zooms(image.header.get_zooms()[:3] + (1.6,))
    path = tmp_path / "perfusion.nii.gz"
    nib.save(image, str(path))
    tensors = plan_request(perfusion=path).tensors
    blob = b"".join(np.ascontiguousarray(t).tobytes() if t.dtype != object else t.reshape(-1)[0] for t in
                    tensors.values())
    assert b"MRN12345" not in blob and b"DOE" not in blob
    assert set(tensors) == {"PERFUSION", "PERFUSION_AFFINE", "FRAME_SECONDS"}


def test_in_memory_volumes_get_the_same_checks_as_files():
    from collat_client import Volume

    bad = series()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        plan_request(perfusion=Volume(bad, AFFINE, 1.6))
    with pytest.raises(InvalidInput, match="frame interval"):
        plan_request(perfusion=Volume(series(), AFFINE, None))


def test_column_major_series_become_row_major_float32_with_the_same_voxels():
    rng = np.random.default_rng(3)
    fortran = np.asfortranarray(rng.integers(-500, 3000, size=(67, 45, 7, 23), dtype=np.int16))
    for threads in (1, 2, 3):
        out = row_major_float32(fortran, threads=threads)
        assert out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, fortran.astype(np.float32))
    for other in (fortran[::2], np.ascontiguousarray(fortran), fortran[..., 0]):  # views, C order, 3D
        np.testing.assert_array_equal(row_major_float32(other), other.astype(np.float32))
