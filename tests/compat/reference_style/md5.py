"""An md5 transformer written for the reference SDK on Flask."""

import hashlib

from aistore.sdk.etl.webserver.flask_server import FlaskServer


class Md5(FlaskServer):
    def transform(self, data, path, etl_args):
        return hashlib.md5(data).hexdigest().encode()


server = Md5()
app = server.app
