"""A transformer written for the reference SDK that sets its MIME type (standard-library server)."""

import json
import sys

from aistore.sdk.etl.webserver.http_multi_threaded_server import HTTPMultiThreadedServer


class Stats(HTTPMultiThreadedServer):
    def transform(self, data, path, etl_args):
        return json.dumps({"size": len(data), "args": etl_args}).encode()

    def get_mime_type(self):
        return "application/json"


if __name__ == "__main__":
    Stats(host="127.0.0.1", port=int(sys.argv[1])).start()
