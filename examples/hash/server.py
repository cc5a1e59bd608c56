"""Seeded hash: every object becomes its digest (lower-case hex), with the hash chosen per request.

``etl_args`` picks the hash, as JSON or as a comma-separated shorthand::

    {"algorithm": "xxh3_64", "seed": 42}        same as  xxh3_64,42
    {"algorithm": "blake2b", "key": "s3cret", "digest_size": 16}
    sha256

Arguments (all optional):

* ``algorithm``: ``xxh32``, ``xxh64``, ``xxh3_64``, ``xxh3_128`` (fast, non-cryptographic, from
  the xxhash package), ``blake2b``, ``blake2s``, ``sha256``, ``sha512``, ``sha3_256``, ``md5``.
* ``seed``: a whole number. The seed of the xxhash functions; for BLAKE2, the salt (as 8 bytes,
  little-endian). Other algorithms take no seed.
* ``key``: a text key for BLAKE2's keyed mode (a MAC); BLAKE2 only.
* ``digest_size``: digest length in bytes; BLAKE2 only.

Offline bucket-to-bucket jobs carry no ``etl_args``; they use the defaults from the
environment: ``HASH_ALGORITHM`` (default ``xxh3_64``) and ``HASH_SEED`` (default ``0``).
Bad arguments are answered with status 400 and a message that says what to change.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import xxhash

from aisetl import ConfigError, TransformError
from aisetl.fastapi_server import FastAPIServer

CHUNK = 1024 * 1024
XXHASH = {"xxh32": 32, "xxh64": 64, "xxh3_64": 64, "xxh3_128": 64}  # name -> seed bits
BLAKE2: dict[str, Any] = {"blake2b": hashlib.blake2b, "blake2s": hashlib.blake2s}
PLAIN = ("sha256", "sha512", "sha3_256", "md5")
ALGORITHMS = (*XXHASH, *BLAKE2, *PLAIN)
ARGUMENTS = ("algorithm", "seed", "key", "digest_size")


def parse_args(etl_args: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The hash arguments of one request: JSON object, or shorthand ``algorithm[,seed]``."""
    text = etl_args.strip()
    if text.startswith("{"):
        try:
            args = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TransformError(400, f"etl_args is not valid JSON: {exc}") from None
        unknown = sorted(set(args) - set(ARGUMENTS))
        if unknown:
            raise TransformError(
                400, f"unknown argument {unknown[0]!r}: expected {', '.join(ARGUMENTS)}"
            )
    else:
        args = {}
        for token in filter(None, (t.strip() for t in text.split(","))):
            key = "seed" if token.lstrip("-").isdigit() else "algorithm"
            args[key] = int(token) if key == "seed" else token
    return {**defaults, **args}


def new_hasher(args: dict[str, Any]) -> Any:
    """A hashlib-style object (``update``, ``hexdigest``) for validated ``args``."""
    name, seed, key, size = (args.get(k) for k in ARGUMENTS)
    if name not in ALGORITHMS:
        raise TransformError(
            400, f"unknown algorithm {name!r}: choose one of {', '.join(ALGORITHMS)}"
        )
    if seed is not None and (type(seed) is not int or seed < 0):
        raise TransformError(400, f"seed must be a whole number >= 0, not {seed!r}")
    if name not in BLAKE2 and (key is not None or size is not None):
        raise TransformError(400, f"key and digest_size are for blake2b and blake2s, not {name}")
    if name in XXHASH:
        bits = XXHASH[name]
        if (seed or 0) >= 2**bits:
            raise TransformError(400, f"seed of {name} must be below 2**{bits}")
        return getattr(xxhash, name)(seed=seed or 0)
    if name in BLAKE2:
        blake = BLAKE2[name]
        options: dict[str, Any] = {}
        if seed:
            if seed >= 2**64:
                raise TransformError(400, f"seed of {name} must be below 2**64")
            options["salt"] = seed.to_bytes(8, "little")
        if key is not None:
            if not isinstance(key, str) or len(key.encode()) > blake.MAX_KEY_SIZE:
                raise TransformError(
                    400, f"key of {name} must be text of at most {blake.MAX_KEY_SIZE} bytes"
                )
            options["key"] = key.encode()
        if size is not None:
            if type(size) is not int or not 1 <= size <= blake.MAX_DIGEST_SIZE:
                raise TransformError(
                    400, f"digest_size of {name} must be 1 to {blake.MAX_DIGEST_SIZE}"
                )
            options["digest_size"] = size
        return blake(**options)
    if seed:
        raise TransformError(400, f"{name} takes no seed: use an xxhash or blake2 algorithm")
    return hashlib.new(name)


class HashServer(FastAPIServer):
    """Answers each object with its digest under the hash that ``etl_args`` chooses."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8000) -> None:
        super().__init__(host, port)
        seed = os.environ.get("HASH_SEED", "0")
        self.defaults: dict[str, Any] = {
            "algorithm": os.environ.get("HASH_ALGORITHM", "xxh3_64"),
            "seed": seed,
        }
        try:
            self.defaults["seed"] = int(seed)
            new_hasher(self.defaults)
        except (ValueError, TransformError) as exc:
            raise ConfigError(f"HASH_ALGORITHM / HASH_SEED: {exc}") from None

    def transform_stream(self, reader: BinaryIO, path: str, etl_args: str) -> Iterator[bytes]:
        hasher = new_hasher(parse_args(etl_args, self.defaults))
        while chunk := reader.read(CHUNK):
            hasher.update(chunk)
        yield hasher.hexdigest().encode()
