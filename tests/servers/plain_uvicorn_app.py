"""An app module for the reference's command line: ``uvicorn plain_uvicorn_app:app``."""

from aisetl import FastAPIServer
from tests.transformers import Upper


class PlainUpper(Upper, FastAPIServer):
    """``Upper`` on FastAPI, built at import time as the reference's images build it."""


app = PlainUpper().app
