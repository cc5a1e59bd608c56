"""Tests of the runtime (``aisetl runtime``) and the client side (``aisetl.deploy``)."""
