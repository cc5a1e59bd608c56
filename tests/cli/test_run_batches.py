"""``aisetl run`` with a server fed batches: every object of the folder, every comm type, a
pipeline after it, and the batches it ran (``AISETL_BATCH_STATS``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisetl.cli import main

REPO = Path(__file__).resolve().parents[2]
BATCHED = f"{REPO / 'tests' / 'transformers.py'}:BatchPlainUpper"


@pytest.mark.parametrize("comm", ["hpush", "hpull", "ws"])
def test_a_folder_through_a_batching_server(tmp_path: Path, comm: str) -> None:
    src, dst, stats = tmp_path / "src", tmp_path / "dst", tmp_path / "stats"
    src.mkdir()
    stats.mkdir()
    for i in range(40):
        (src / f"obj-{i}.txt").write_bytes(f"object {i}\n".encode())
    argv = ["run", BATCHED, "--src", str(src), "--dst", str(dst), "--comm", comm, "--quiet"]
    code = main([*argv, "--concurrency", "16", "--env", f"AISETL_BATCH_STATS={stats}", "--no-spec"])
    assert code == 0
    for i in range(40):
        assert (dst / f"obj-{i}.txt").read_bytes() == f"OBJECT {i}\n".encode()
    sizes: dict[int, int] = {}
    for file in stats.glob("*.json"):
        for size, count in json.loads(file.read_text())["sizes"].items():
            sizes[int(size)] = sizes.get(int(size), 0) + count
    assert sum(size * count for size, count in sizes.items()) == 40  # each object once
