"""A transformer written for the reference SDK on FastAPI that returns text, not bytes."""

import hashlib

from aistore.sdk.etl.webserver.fastapi_server import FastAPIServer


class Sha256Text(FastAPIServer):
    def transform(self, data, path, etl_args):
        return hashlib.sha256(data).hexdigest()


server = Sha256Text()
app = server.app
