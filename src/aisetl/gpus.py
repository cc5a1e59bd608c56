"""One GPU per worker process: ``AISETL_GPUS=auto|none|0,1,...``.

With N GPUs listed (or found, with ``auto``) and W worker processes, worker *i* sees only GPU
*i mod N*: ``CUDA_VISIBLE_DEVICES`` is set in the worker before the server object is built,
so a model that ``__init__`` puts on ``cuda`` lands on that worker's own GPU.

That needs the server built in each worker, after the fork (a CUDA context cannot cross a
fork, and a model loaded once before it would sit on one GPU). So when GPUs are set and there
are several workers, ``aisetl serve`` builds the server in every worker instead of once before
forking (:func:`start_per_worker`); without ``AISETL_GPUS`` nothing changes: the server is
built once and the workers share its memory copy-on-write.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping

from aisetl.config import parse_gpus

ENV = "CUDA_VISIBLE_DEVICES"
_logger = logging.getLogger("aisetl.gpus")


def detect(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else the driver's."""
    env = os.environ if env is None else env
    visible = env.get(ENV)
    if visible is not None:
        return tuple(part.strip() for part in visible.split(",") if part.strip())
    found = glob.glob("/proc/driver/nvidia/gpus/*")
    if found:
        return tuple(str(index) for index in range(len(found)))
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        listing = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    count = sum(1 for line in listing.splitlines() if line.startswith("GPU "))
    return tuple(str(index) for index in range(count))


def configured(setting: str, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The GPUs to spread workers over, from the ``AISETL_GPUS`` setting (``()``: leave alone)."""
    if setting in ("", "none"):
        return ()
    if setting == "auto":
        return detect(env)
    return tuple(setting.split(","))


def pin(worker: int, gpus: tuple[str, ...]) -> str | None:
    """Make worker ``worker`` see only its GPU (``gpus[worker % len(gpus)]``); returns it."""
    if not gpus:
        return None
    gpu = gpus[worker % len(gpus)]
    os.environ[ENV] = gpu
    _logger.info("worker %d (pid %d): %s=%s", worker, os.getpid(), ENV, gpu)
    return gpu


def pin_from_env(worker: int) -> str | None:
    """:func:`pin` with ``AISETL_GPUS`` as the environment gives it (a worker just forked)."""
    return pin(worker, configured(parse_gpus(os.environ)))


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``AISETL_GPUS`` asks for GPUs to be spread over the workers."""
    env = os.environ if env is None else env
    return bool(configured(parse_gpus(env), env))
