"""An FFmpeg-style transformer written for the reference SDK: pipes the object through a tool."""

import os
import subprocess

from aistore.sdk.etl.webserver.fastapi_server import FastAPIServer


class ShellOut(FastAPIServer):
    def __init__(self, host: str = "0.0.0.0", port: int = 8000):
        super().__init__(host=host, port=port)
        self.command = ["tr", os.getenv("FROM_SET", "a-z"), os.getenv("TO_SET", "A-Z")]

    def transform(self, data, path, etl_args):
        if isinstance(data, str):
            with open(data, "rb") as f:
                data = f.read()
        done = subprocess.run(self.command, input=data, capture_output=True, check=True)
        return done.stdout


server = ShellOut()
app = server.app
