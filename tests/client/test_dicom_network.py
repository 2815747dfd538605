"""Peers are named the way PACS administrators write them, and bad ones are refused in one line."""

from __future__ import annotations

import pytest

from collat_client.dicom.network import Peer, check_destination, dicom_files
from collat_client.errors import InvalidInput


def test_peers_parse_as_ae_at_host_port():
    assert Peer.parse("PACS@10.0.0.5:104") == Peer("PACS", "10.0.0.5", 104)
    assert Peer.parse(" STORE SCP@pacs.hospital.org:11112 ") == Peer("STORE SCP", "pacs.hospital.org", 11112)
    assert Peer.parse("PACS@[::1]:104") == Peer("PACS", "::1", 104)
    assert str(Peer.parse("PACS@10.0.0.5:104")) == "PACS@10.0.0.5:104"
    assert check_destination("https://pacs.example.org/dicom-web") == "https://pacs.example.org/dicom-web"


@pytest.mark.parametrize("text", ["PACS", "PACS@host", "@host:104", "WAYTOOLONGAETITLE17@host:104", "PACS@host:0",
                                  "PACS@host:70000", "PACS@host:port"])
def test_bad_peers_are_refused_with_the_expected_form(text):
    with pytest.raises(InvalidInput, match="a DICOM peer is AE@HOST:PORT"):
        Peer.parse(text)


def test_only_dicom_files_are_sent_and_an_empty_folder_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.dcm").write_bytes(b"")
    (tmp_path / "a" / ".partial.dcm").write_bytes(b"")
    (tmp_path / "a" / ".collat-staging").mkdir()
    (tmp_path / "a" / ".collat-staging" / "summary_sc.dcm").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("")
    assert dicom_files([tmp_path]) == [tmp_path / "a" / "x.dcm"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no DICOM files"):
        dicom_files([tmp_path / "empty"])
    with pytest.raises(InvalidInput, match="no such file or folder"):
        dicom_files([tmp_path / "missing"])
