"""``aisetl serve`` outside a cluster: an emulated target beside the server, and how to try it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aisetl.target import ETL, Cluster
from aisetl.target.wire import ObjectName, destination_hop, go_path_escape

#: The bucket the emulated target serves from the local folder.
BUCKET = "local"


@dataclass
class LocalTarget:
    """A running emulated target that serves ``folder`` as bucket :data:`BUCKET`."""

    cluster: Cluster
    etl: ETL
    folder: Path

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the emulated target."""
        return self.cluster.targets[0].url

    @property
    def target_url(self) -> str:
        """The ``AIS_TARGET_URL`` the server gets, as a cluster would set it."""
        return self.etl.target_url(0)

    def close(self) -> None:
        """Stop the emulated target."""
        self.cluster.close()


def start(folder: Path, etl_name: str, server_host: str, server_port: int) -> LocalTarget:
    """Start an emulated target on 127.0.0.1 that knows the server as ETL ``etl_name``."""
    cluster = Cluster(record=0).start()
    try:
        cluster.targets[0].attach_bucket(BUCKET, folder)
        host = "127.0.0.1" if server_host in ("0.0.0.0", "::", "") else server_host
        etl = cluster.attach(etl_name, f"http://{host}:{server_port}", comm="hpush")
    except BaseException:
        cluster.close()
        raise
    return LocalTarget(cluster, etl, folder)


def _example(folder: Path) -> str:
    """A file of ``folder`` to name in the examples (``FILE`` when there is none)."""
    try:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_file() and not entry.name.startswith(".") and " " not in entry.name:
                return entry.name
    except OSError:
        pass
    return "FILE"


def instructions(local: LocalTarget, server_url: str) -> str:
    """How to send the server an object by hand, over each way a target would."""
    name = _example(local.folder)
    uname = ObjectName("ais", "", BUCKET, name).uname
    out = ObjectName("ais", "", BUCKET, f"out/{name}").uname
    hop = destination_hop(local.url, out)
    return "\n".join(
        [
            f"aisetl serve: AIS_TARGET_URL is not set, so an emulated AIStore target runs at "
            f"{local.url}",
            f"  serving {local.folder} as bucket {BUCKET!r} (set AIS_TARGET_URL to use a real "
            "cluster; in a container nothing is emulated)",
            "send the server an object from that folder:",
            f"  curl -X PUT --data-binary @{name} {server_url}/{BUCKET}/{name}"
            "  # hpush: the bytes in, the result out",
            f"  curl '{server_url}/{go_path_escape(uname)}'"
            "  # hpull: the server GETs the object from the target",
            f"  curl '{local.url}/v1/objects/{BUCKET}/{name}?etl_name={local.etl.name}'"
            "  # through the target, like `ais etl object`",
            f"  curl -X PUT --data-binary @{name} -H 'Ais-Node-Url: {hop}' "
            f"{server_url}/{BUCKET}/{name}"
            f"  # direct put: the result is stored as out/{name}",
            "add ?etl_args=... to pass arguments; Ctrl-C stops the server and the target",
        ]
    )
