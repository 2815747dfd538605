"""The DICOM node's work folder keeps every study through a kill at any step (no network, no server)."""

from __future__ import annotations

import os
import time

from collat_client.apps.spool import Spool, StudyState, study_key


def test_a_study_is_queued_only_after_its_quiet_period(tmp_path):
    spool = Spool(tmp_path)
    for n in range(3):
        spool.store("1.2.3", f"1.2.3.{n}", b"DICM%d" % n)
    now = time.time()
    assert spool.promote_quiet(10.0, now=now) == []  # still arriving
    [queued] = spool.promote_quiet(10.0, now=now + 11)
    assert queued.key == study_key("1.2.3") and "1.2.3" not in str(queued.folder)  # no UID in folder names
    assert len(list(queued.input.glob("*.dcm"))) == 3 and queued.load().instances == 3
    assert not list((tmp_path / "incoming").iterdir())


def test_late_instances_of_a_queued_study_make_a_batch_of_their_own(tmp_path):
    spool = Spool(tmp_path)
    spool.store("1.2.3", "1.2.3.1", b"a")
    first = spool.promote_quiet(0.0, now=time.time() + 1)[0]
    spool.store("1.2.3", "1.2.3.2", b"b")
    second = spool.promote_quiet(0.0, now=time.time() + 1)[0]
    assert second.key != first.key and second.key.startswith(first.key)
    assert [s.key for s in spool.queued()] == [first.key, second.key]  # oldest first


def test_a_kill_between_the_two_renames_of_a_promotion_loses_nothing(tmp_path):
    spool = Spool(tmp_path)
    spool.store("1.2.3", "1.2.3.1", b"a")
    queued = spool.promote_quiet(0.0, now=time.time() + 1)[0]
    os.replace(queued.folder, tmp_path / "queue" / f".{queued.key}")  # as if killed before the second rename
    (tmp_path / "incoming" / "x").mkdir()
    (tmp_path / "incoming" / "x" / ".half.dcm.partial").write_bytes(b"half")  # a write it never finished
    restarted = Spool(tmp_path)
    assert [s.key for s in restarted.queued()] == [queued.key]
    assert restarted.promote_quiet(0.0, now=time.time() + 1) == []  # a folder of half-written files only


def test_state_is_saved_whole_and_finished_studies_keep_results_not_images(tmp_path):
    spool = Spool(tmp_path)
    spool.store("1.2.3", "1.2.3.1", b"a")
    queued = spool.promote_quiet(0.0, now=time.time() + 1)[0]
    state = queued.load()
    state.sent.append("summary_sc.dcm")
    queued.save(state)
    assert queued.load() == StudyState(received=state.received, instances=1, sent=["summary_sc.dcm"],
                                       events=state.events)
    assert set(state.events) == {"first_instance", "queued"}
    assert state.events["queued"] >= state.events["first_instance"]
    assert not list(queued.folder.glob(".*"))  # written aside, renamed in
    queued.results.mkdir()
    (queued.results / "summary_sc.dcm").write_bytes(b"sc")
    done = spool.finish(queued)
    assert (done / "results" / "summary_sc.dcm").exists() and not (done / "input").exists()
    spool.store("4.5", "4.5.1", b"a")
    failed = spool.fail(spool.promote_quiet(0.0, now=time.time() + 1)[0], "no usable series")
    assert (failed / "reason.txt").read_text() == "no usable series\n" and (failed / "input").exists()
