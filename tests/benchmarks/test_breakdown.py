"""The latency accounting of make bench: parallel branches are not summed into the patient's wait."""

import pytest

from benchmarks.pyspy import top_lines
from benchmarks.run import time_breakdown


def _stats(queue_ms: float, compute_ms: float, requests: int = 2) -> dict[str, float]:
    return {"queue_ns": queue_ms * 1e6 * requests, "compute_ns": compute_ms * 1e6 * requests, "total_ns": 0.0}


def test_outside_the_networks_follows_the_longer_branch():
    delta = {"preprocess_perfusion": _stats(0, 300), "mrod_net": _stats(50, 250),
             "postprocess_collateral": _stats(0, 100),
             "preprocess_diffusion": _stats(0, 100), "hypoperfusion_unet": _stats(100, 3000),
             "postprocess_hypoperfusion": _stats(0, 50), "merge_metrics": _stats(0, 10),
             "stroke_triage": {"queue_ns": 0.0, "compute_ns": 0.0, "total_ns": 3400e6 * 2}}
    b = time_breakdown(delta, e2e_s=4.0, requests=2)
    assert b["critical_branch"] == "hypoperfusion"
    assert b["hypoperfusion_branch_ms"] == pytest.approx(3250) and b["collateral_branch_ms"] == pytest.approx(700)
    assert b["client_and_transport_ms"] == pytest.approx(600)
    assert b["outside_networks_share"] == pytest.approx(1 - 3100 / 4000)
    # every step summed: 3960 ms of server work + 600 ms client, of which 3400 ms in the two networks
    assert b["outside_networks_share_of_all_work"] == pytest.approx(1 - 3400 / 4560)


def test_py_spy_stacks_fold_onto_the_deepest_science_line():
    raw = ("execute (collat_ensemble/serving/triton_models.py:62);prepare (collat_ensemble/preprocess.py:79);"
           "tensordot (numpy/core/numeric.py:1119) 30\n"
           "execute (collat_ensemble/serving/triton_models.py:62);prepare (collat_ensemble/preprocess.py:88) 10\n"
           "execute (collat_ensemble/serving/triton_models.py:62);as_numpy (pb_utils.py:1) 10\n")
    assert top_lines(raw, 5) == [("prepare (collat_ensemble/preprocess.py:79)", 0.6),
                                 ("prepare (collat_ensemble/preprocess.py:88)", 0.2),
                                 ("(Triton adapter, tensor copies, imports)", 0.2)]
