"""Object names and etl_args with every kind of special character, in every server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aisetl.target import EmulatedTarget

from ..transformers import upper
from .conftest import FRAMEWORKS, REPO, TEST_ENV, health_ok, payload, serve_argv

NAMES = [
    "with space.txt",
    "ünïcødé/名前.bin",
    "100%.txt",
    "a%41b",
    "plus+sign",
    "semi;colon",
    "at@sign",
    "hash#tag",
    "q?mark",
    "amp&and=eq",
    "comma,sep",
    "d1/d2/d3/deep file.txt",
]
ARGS = [
    '{"size": 256, "name": "a b"}',
    "a b,c",
    "a+b c",
    "ünïcødé",
    "x=1&y=2",
    "100%",
    "  padded  ",
    "#frag?q=1",
]


def comms(framework: str) -> list[str]:
    return ["hpush", "hpull", "ws"] if framework == "fastapi" else ["hpush", "hpull"]


@pytest.fixture(scope="module")
def sane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedTarget]:
    """A target that escapes hpush paths properly (no §5.6 defects), with servers started."""
    with EmulatedTarget(tmp_path_factory.mktemp("sane"), faithful=False) as tgt:
        for framework in FRAMEWORKS:
            tgt.launch(
                f"{framework}-describe",
                serve_argv("tests.transformers:Describe", framework),
                comm="ws" if framework == "fastapi" else "hpush",
                env=TEST_ENV, cwd=str(REPO), init_timeout=60,
            )  # fmt: skip
            tgt.launch(
                f"{framework}-upper",
                serve_argv("tests.transformers:UpperStream", framework),
                comm="ws" if framework == "fastapi" else "hpush",
                env=TEST_ENV, cwd=str(REPO), init_timeout=60,
            )  # fmt: skip
        yield tgt


def expected_path(comm: str, bucket: str, name: str) -> str:
    """The path the transform sees: decoded once, no leading slash, per comm type."""
    if comm == "hpull":
        return f"ais/@#/{bucket}/{name}"
    if comm == "ws":
        return name
    return f"{bucket}/{name}"


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("fqn", [False, True], ids=["body", "fqn"])
def test_special_object_names(sane: EmulatedTarget, framework: str, fqn: bool) -> None:
    bucket = sane.bucket("names")
    for comm in comms(framework):
        for name in NAMES:
            data = payload(3000, seed=len(name))
            bucket.put(name, data)
            seen = sane.transform(f"{framework}-describe", bucket, name, comm=comm, fqn=fqn)
            assert seen.error is None, (comm, name, seen.error)
            assert seen.content is not None
            assert seen.content.decode() == f"bytes|{expected_path(comm, 'names', name)}|"
            result = sane.transform(f"{framework}-upper", bucket, name, comm=comm, fqn=fqn)
            assert result.content == upper(data), (comm, name)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_etl_args_arrive_verbatim_but_stripped(sane: EmulatedTarget, framework: str) -> None:
    """Every byte of etl_args arrives, less surrounding white space (as the reference strips it:
    a transformer comparing ``etl_args == "hex"`` keeps working)."""
    bucket = sane.bucket("args")
    bucket.put("o", b"x")
    for comm in comms(framework):
        for args in ARGS:
            seen = sane.transform(f"{framework}-describe", bucket, "o", comm=comm, etl_args=args)
            assert seen.error is None, seen.error
            assert seen.content is not None
            assert seen.content.decode() == (
                f"bytes|{expected_path(comm, 'args', 'o')}|{args.strip()}"
            )


def test_faithful_target_cuts_names_at_question_mark_and_hash(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """TV-11/TV-12: a real target loses the FQN of such names over hpush; hpull and ws do not."""
    with EmulatedTarget(tmp_path_factory.mktemp("faithful"), faithful=True) as tgt:
        etl = tgt.launch(
            "faithful-describe", serve_argv("tests.transformers:Describe", "fastapi"),
            comm="ws", env=TEST_ENV, cwd=str(REPO), init_timeout=60,
        )  # fmt: skip
        bucket = tgt.bucket("b")
        bucket.put("what?.txt", b"content")
        bucket.put("a#b", b"content")
        cut = tgt.hpush(etl, bucket, "what?.txt", fqn=True)
        # The path is cut at '?' and etl_fqn merges into a key '.txt?etl_fqn': the server
        # refuses to transform an empty body and names the object (PROTOCOL.md §5.6).
        assert cut.status == 400 and cut.error is not None, cut
        assert "'b/what?.txt'" in cut.error.msg and "holds a '?'" in cut.error.msg
        assert health_ok(etl)
        cut = tgt.hpush(etl, bucket, "a#b", fqn=True)
        assert cut.content == b"bytes|b/a|"
        for comm in ("hpull", "ws"):
            whole = tgt.transform(etl, bucket, "what?.txt", comm=comm, fqn=True)
            assert whole.content is not None and whole.content.startswith(b"bytes|")
            assert whole.content.rstrip(b"|").endswith(b"what?.txt")
        bad = tgt.hpush(etl, bucket, "100%.txt", fqn=True)
        assert bad.error is not None and bad.attempts == 0  # TV-13: no request at all
