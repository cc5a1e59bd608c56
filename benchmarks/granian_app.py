"""The benchmark's transforms as FastAPI apps for Granian (``--server ours-granian``).

Granian (a Rust HTTP server with an ASGI interface) imports ``benchmarks.granian_app:app``;
``BENCH_TRANSFORM`` names the transform. Opt-in: ``pip install granian`` first. It serves the
same aisetl app as ``aisetl serve --server fastapi`` does under uvicorn, for a side-by-side
measurement of the two server stacks.
"""

from __future__ import annotations

import os

from aisetl.fastapi_server import FastAPIServer
from benchmarks import ours

_cls = getattr(ours, ours.CLASSES[os.environ.get("BENCH_TRANSFORM", "echo")])
app = type(_cls.__name__, (FastAPIServer, _cls), {})().app
