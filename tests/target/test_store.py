"""Buckets in folders: layout, atomic writes, listings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisetl.target.store import TEMP_PREFIX, Bucket, Mountpath


def test_ais_layout_and_fqn(tmp_path: Path) -> None:
    mp = Mountpath(tmp_path)
    bucket = mp.bucket("images")
    bucket.put("dir/cat 1.jpg", b"hello")
    assert bucket.fqn("dir/cat 1.jpg") == str(tmp_path / "@ais/images/%ob/dir/cat 1.jpg")
    assert bucket.get("dir/cat 1.jpg") == b"hello"
    assert mp.bucket_root("b", "ais", "team") == tmp_path / "@ais/#team/b/%ob"
    assert mp.bucket_root("b", "aws", "uuid#ns") == tmp_path / "@aws/@uuid#ns/b/%ob"
    assert mp.lookup("images") is bucket
    assert mp.lookup("nope") is None


def test_attached_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.flac").write_bytes(b"x")
    bucket = Mountpath(tmp_path / "mp").attach("src", tmp_path)
    assert bucket.fqn("sub/a.flac") == str(tmp_path / "sub" / "a.flac")
    assert bucket.list() == ["sub/a.flac"]
    with pytest.raises(FileNotFoundError):
        Mountpath(tmp_path).attach("x", tmp_path / "missing")


def test_listing_prefix_sorted_and_skips_temp_files(tmp_path: Path) -> None:
    bucket = Bucket("b", tmp_path)
    for name in ["b/2", "a", "b/1", "c/d/e", "bz"]:
        bucket.put(name, b"")
    (tmp_path / "b" / f"{TEMP_PREFIX}x.tmp").write_bytes(b"partial")
    assert bucket.list() == ["a", "b/1", "b/2", "bz", "c/d/e"]
    assert bucket.list("b") == ["b/1", "b/2", "bz"]
    assert bucket.list("b/") == ["b/1", "b/2"]
    assert bucket.list("c/d/") == ["c/d/e"]
    assert bucket.list("zzz/") == []


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "a//b", "./a", "a/", "x\x00"])
def test_names_that_cannot_be_files(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        Bucket("b", tmp_path).fqn(name)


def test_atomic_put_leaves_nothing_on_failure(tmp_path: Path) -> None:
    bucket = Bucket("b", tmp_path)
    bucket.put("o", b"old")

    def chunks() -> Iterator[bytes]:
        yield b"new-partial"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        bucket.put("o", chunks())
    assert bucket.get("o") == b"old"
    assert sorted(os.listdir(tmp_path)) == ["o"]
    assert bucket.put("o", [b"a", b"bc"]) == 3
    assert bucket.get("o") == b"abc"
    assert bucket.delete("o") and not bucket.delete("o")
    assert not bucket.exists("o")


def test_invalid_bucket_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Bucket("a..b", tmp_path)
    with pytest.raises(ValueError):
        Bucket("has space", tmp_path)
