"""The real data under tests/data is what its README records: the files, their sizes, sha256, rows."""

from __future__ import annotations

import hashlib
import re

from conftest import GSM8K_TEST_HEAD, MATH500, TEST_DATA

# The LFS pointer of openai/prm800k's prm800k/math_splits/test.jsonl. Written here as well as in the
# README so that a changed math500.jsonl cannot pass by an edit of the README alone.
PRM800K_TEST_SHA256 = "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132"


def _recorded_checksums() -> dict[str, tuple[int, str]]:
    text = (TEST_DATA / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\S+) \| (\d+) \| ([0-9a-f]{64}) \|$", text, flags=re.MULTILINE)
    return {name: (int(size), sha256) for name, size, sha256 in rows}


def test_every_shipped_file_matches_its_recorded_checksum() -> None:
    recorded = _recorded_checksums()
    assert sorted(recorded) == sorted(p.name for p in TEST_DATA.iterdir() if p.name != "README.md")
    for name, (size, sha256) in recorded.items():
        data = (TEST_DATA / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha256), name


def test_math500_is_the_official_prm800k_test_split() -> None:
    assert hashlib.sha256(MATH500.read_bytes()).hexdigest() == PRM800K_TEST_SHA256
    assert _recorded_checksums()["math500.jsonl"][1] == PRM800K_TEST_SHA256


def test_row_counts() -> None:
    assert len(MATH500.read_text(encoding="utf-8").splitlines()) == 500
    assert len(GSM8K_TEST_HEAD.read_text(encoding="utf-8").splitlines()) == 500
