"""A real scan with no stroke through the real server: the U-Net's hypoperfusion may not become a decision.

The Philips QA DWI of ``../shared/realdata`` is a healthy volunteer. The phantom-trained U-Net,
told the stroke is on the left, paints a large hypoperfusion there around a 0 mL core, which a
scan covering the whole brain would turn into a DEFUSE 3 "yes". The training-domain gate must
withhold DEFUSE 3 for it whatever else the scan passes; DAWN, which reads only the core, is
withheld here by the partial coverage alone.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from realdata import AVAILABLE, MISSING, REALDATA

from collat_client.apps.cli import main as cli


@pytest.mark.skipif(not AVAILABLE, reason=MISSING)
def test_a_healthy_real_dwi_gets_no_defuse3_decision_from_the_u_net(server, tmp_path):
    args = ["infer", str(REALDATA / "philips_classic_dwi"), "--nihss", "10", "--age", "70", "--side", "left",
            "--url", server.http_url]
    result = CliRunner().invoke(cli, [*args, "--json", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    h, checks = metrics["hypoperfusion"], {c["name"]: c for c in metrics["quality"]["checks"]}
    assert h["core_ml"] < 0.1 and h["hypoperfusion_ml"] > 15.0  # what the gate is for: a lesion with no core
    gate = checks["core_in_training_domain"]
    assert gate["verdict"] == "fail" and gate["withholds"] == ["defuse3"]
    assert "trained only on strokes with a core of" in gate["reason"]
    assert h["defuse3"] is None and gate["reason"] in metrics["quality"]["decisions_withheld"]
    # As a person reads it: the table says WITHHELD, and the reason is printed under it.
    shown = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "shown")])
    assert shown.exit_code == 0 and "trained only on strokes" in " ".join(shown.stdout.split())
    assert "DEFUSE 3 and DAWN decisions withheld" in shown.stderr  # DAWN by the partial coverage
