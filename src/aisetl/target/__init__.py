"""An emulated AIStore target: buckets in folders, the ETL object endpoint, and the target's
side of hpush, hpull and ws, byte for byte (PROTOCOL.md §15).

Synchronous use::

    with EmulatedTarget() as tgt:
        tgt.bucket("src").put("a b.txt", b"hello")
        etl = tgt.launch("upper-etl", [sys.executable, "server.py", "--port", "{port}"])
        result = tgt.hpush(etl, "src", "a b.txt")  # result.content == b"HELLO"

The asyncio core (:class:`AsyncCluster`, :class:`AsyncTarget`) is available for async code.
"""

from aisetl.target.cluster import ETL, AsyncCluster, AsyncTarget, ServerAddress
from aisetl.target.driver import Driver, RetryPolicy, Task, TransformResult
from aisetl.target.endpoint import PutRecord
from aisetl.target.faults import Fault, Faults
from aisetl.target.http import HTTPClient, HTTPServer, Reply, Request, Response, TransportError
from aisetl.target.jobs import Job, JobProgress, JobReport, JobSpec, rename_with, run_job
from aisetl.target.ports import PortLease, free_port
from aisetl.target.process import ServerProcess, ServerStartError, start_server
from aisetl.target.record import Record, Recorder
from aisetl.target.store import Bucket, Mountpath
from aisetl.target.sync import Cluster, EmulatedTarget, LoopThread, Target
from aisetl.target.wire import GoURLError, ObjectName, ObjError
from aisetl.target.ws import WSError, WSPool

__all__ = [
    "ETL",
    "AsyncCluster",
    "AsyncTarget",
    "Bucket",
    "Cluster",
    "Driver",
    "EmulatedTarget",
    "Fault",
    "Faults",
    "GoURLError",
    "HTTPClient",
    "HTTPServer",
    "Job",
    "JobProgress",
    "JobReport",
    "JobSpec",
    "LoopThread",
    "Mountpath",
    "ObjError",
    "ObjectName",
    "PortLease",
    "PutRecord",
    "Record",
    "Recorder",
    "Reply",
    "Request",
    "Response",
    "RetryPolicy",
    "ServerAddress",
    "ServerProcess",
    "ServerStartError",
    "Target",
    "Task",
    "TransformResult",
    "TransportError",
    "WSError",
    "WSPool",
    "free_port",
    "rename_with",
    "run_job",
    "start_server",
]
