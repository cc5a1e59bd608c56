"""``transform_batch``: concurrent objects of every communication type run as batches, in every
framework, each object with its own outcome (tests.transformers.BatchUpper reports its batch)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest

from aisetl.target import ETL, EmulatedTarget, TransformResult

from ..transformers import batch_of, upper
from .conftest import FRAMEWORKS, REPO, TEST_ENV, health_ok, payload, serve_argv

SPEC = "tests.transformers:BatchUpper"
#: A delay no test waits for: a batch of this size runs because it is full.
FOREVER = "30"


def ways(framework: str) -> list[tuple[str, bool]]:
    """Every (comm, fqn) a target may use with this framework."""
    comms = ["hpush", "hpull", "ws"] if framework == "fastapi" else ["hpush", "hpull"]
    return [(comm, fqn) for comm in comms for fqn in (False, True)]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedTarget]:
    """One ws connection per pool, so every ws task of a test shares one connection."""
    with EmulatedTarget(tmp_path_factory.mktemp("batch"), time_scale=0.01, multiplier=1) as tgt:
        yield tgt


_started: dict[str, ETL] = {}


def batching(target: EmulatedTarget, framework: str, size: int, delay: str, **env: str) -> ETL:
    """A BatchUpper server on ``framework`` with these batch settings (once per module)."""
    name = f"batch-{framework}-{size}-{delay.replace('.', '')}-{len(env)}"
    if name not in _started:
        _started[name] = target.launch(
            name, serve_argv(SPEC, framework),
            comm="ws" if framework == "fastapi" else "hpush",
            env={**TEST_ENV, "AISETL_MAX_BATCH_SIZE": str(size),
                 "AISETL_MAX_BATCH_DELAY": delay, **env},
            cwd=str(REPO), init_timeout=60,
        )  # fmt: skip
    return _started[name]


def send_together(
    target: EmulatedTarget, etl: ETL, objects: Sequence[tuple[str, str, bool, str]]
) -> list[TransformResult]:
    """Send (name, comm, fqn, etl_args) objects at once; their results in the same order."""

    async def together() -> list[TransformResult]:
        return list(
            await asyncio.gather(
                *(
                    target.core.transform(etl, "b", name, comm=comm, fqn=fqn, etl_args=args)
                    for name, comm, fqn, args in objects
                )
            )
        )

    return target.cluster.run(together(), timeout=60)


def ran_with(result: TransformResult) -> tuple[int, list[str]]:
    """The size of the batch an object ran in and its objects' names (what each path holds
    beyond the object name differs by comm type: ``ais/@#/b/`` for hpull, ``b/`` for hpush)."""
    assert result.content is not None, result
    seen = batch_of(result.content)
    paths = [str(p).split("@#/", 1)[-1].removeprefix("b/") for p in seen["paths"]]  # type: ignore[attr-defined]
    return int(seen["size"]), sorted(paths)  # type: ignore[call-overload]


def put(target: EmulatedTarget, names: Sequence[str]) -> dict[str, bytes]:
    bucket = target.bucket("b")
    data = {name: payload(1000 + i, seed=hash(name) % 1000) for i, name in enumerate(names)}
    for name, value in data.items():
        bucket.put(name, value)
    return data


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_communication_type_shares_one_batch(target: EmulatedTarget, framework: str) -> None:
    modes = ways(framework)
    etl = batching(target, framework, len(modes), FOREVER)
    names = [f"{framework}/mixed/{comm}-{'fqn' if fqn else 'body'}" for comm, fqn in modes]
    data = put(target, names)
    results = send_together(
        target, etl, [(name, comm, fqn, "") for name, (comm, fqn) in zip(names, modes, strict=True)]
    )
    for name, result in zip(names, results, strict=True):
        assert result.error is None and result.lost is None, (name, result, etl.logs()[-3000:])
        assert result.content is not None
        assert result.content.rsplit(b"\n", 1)[0] == upper(data[name])
        assert ran_with(result) == (len(modes), sorted(names))
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_one_failing_object_fails_alone(target: EmulatedTarget, framework: str) -> None:
    modes = ways(framework)
    etl = batching(target, framework, len(modes), FOREVER)
    names = [f"{framework}/errors/{i}" for i in range(len(modes))]
    args = ["fail", "reject"] + [""] * (len(modes) - 2)
    data = put(target, names)
    objects = [(n, comm, fqn, a) for n, (comm, fqn), a in zip(names, modes, args, strict=True)]
    results = send_together(target, etl, objects)
    by_args = list(zip(objects, results, strict=True))
    for (name, comm, _, arg), result in by_args:
        if arg == "":
            assert result.error is None and result.content is not None, (name, result)
            assert result.content.rsplit(b"\n", 1)[0] == upper(data[name])
            assert ran_with(result)[0] == len(modes)  # they did run together
            continue
        if comm == "ws":  # no error channel: a text answer with the server's message
            assert result.lost is not None
            problem = result.lost
        else:
            assert result.error is not None, (name, result)
            assert result.status == (500 if arg == "fail" else 415)
            problem = result.error.msg
        expected = (
            f"ValueError: cannot transform b/{name}" if arg == "fail"
            else f"unsupported input: b/{name}"
        )  # fmt: skip
        plain = problem.replace("ais/@#/", "").replace("b/", "")
        assert expected.replace("b/", "") in plain, problem
        assert problem.rstrip().endswith(f"{name})"), problem
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_result_list_of_the_wrong_length_fails_each_object(
    target: EmulatedTarget, framework: str
) -> None:
    modes = [mode for mode in ways(framework) if mode[0] != "ws"]
    etl = batching(target, framework, len(modes), FOREVER, AISETL_WS_ERRORS="text")
    names = [f"{framework}/short/{i}" for i in range(len(modes))]
    put(target, names)
    results = send_together(
        target, etl, [(n, comm, fqn, "short") for n, (comm, fqn) in zip(names, modes, strict=True)]
    )
    for name, result in zip(names, results, strict=True):
        assert result.error is not None and result.status == 500, (name, result)
        message = result.error.msg
        count = f"returned {len(modes) - 1} result(s) for a batch of {len(modes)} object(s)"
        assert f"transform_batch() {count}" in message
        assert "one result (bytes, or an exception for that object) per item" in message
    # and a batch that raises fails each of its objects with the exception's text
    raised = send_together(target, etl, [(n, "hpush", False, "raise") for n in names[: len(modes)]])
    for result in raised:
        assert result.status == 500 and result.error is not None
        assert "RuntimeError: the whole batch failed" in result.error.msg
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_lone_object_does_not_wait_for_a_batch_to_fill(
    target: EmulatedTarget, framework: str
) -> None:
    """With room for 1000 objects, a lone one runs once max_batch_delay has passed (and a
    second one sent soon after joins it, so the delay really is waited)."""
    etl = batching(target, framework, 1000, "0.5")
    names = [f"{framework}/lone/{i}" for i in range(3)]
    data = put(target, names)
    (alone,) = send_together(target, etl, [(names[0], "hpush", False, "")])
    assert alone.error is None and alone.content is not None, alone
    assert alone.content.rsplit(b"\n", 1)[0] == upper(data[names[0]])
    assert ran_with(alone) == (1, [names[0]])

    async def two_apart() -> list[TransformResult]:
        first = asyncio.ensure_future(target.core.transform(etl, "b", names[1], comm="hpush"))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(target.core.transform(etl, "b", names[2], comm="hpush"))
        return list(await asyncio.gather(first, second))

    pair = target.cluster.run(two_apart(), timeout=60)
    for result in pair:
        assert ran_with(result)[0] == 2


def test_ws_answers_keep_arrival_order_when_batches_finish_out_of_order(
    target: EmulatedTarget,
) -> None:
    """Two batches run at once; the first (slow) one ends last; answers stay in order."""
    etl = batching(target, "fastapi", 4, "0.05", AISETL_BATCH_CONCURRENCY="2")
    names = [f"ws-order/{i:02}" for i in range(16)]
    data = put(target, names)

    async def pipelined() -> list[TransformResult]:
        tasks = []
        for i, name in enumerate(names):
            args = "sleep=0.5" if i < 4 else ""
            tasks.append(
                asyncio.ensure_future(
                    target.core.transform(etl, "b", name, comm="ws", fqn=False, etl_args=args)
                )
            )
            if i == 3:
                await asyncio.sleep(0.2)  # the slow four make up the first batch
        return list(await asyncio.gather(*tasks))

    results = target.cluster.run(pipelined(), timeout=60)
    assert etl.inline_pools[0].live == 1  # one connection carried every task
    sizes = []
    for name, result in zip(names, results, strict=True):
        assert result.error is None and result.lost is None, (name, result)
        assert result.content is not None
        assert result.content.rsplit(b"\n", 1)[0] == upper(data[name]), name
        sizes.append(ran_with(result)[0])
    assert sizes[:4] == [4, 4, 4, 4] and max(sizes) <= 4
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_direct_put_and_pipelines_work_per_object(target: EmulatedTarget, framework: str) -> None:
    """Each object of a batch goes on to its own next stage."""
    modes = [mode for mode in ways(framework) if mode[0] != "ws"]
    etl = batching(target, framework, len(modes), FOREVER)
    second = batching(target, framework, 1, "0")
    names = [f"{framework}/pipe/{i}" for i in range(len(modes))]
    data = put(target, names)

    async def piped() -> list[TransformResult]:
        return list(
            await asyncio.gather(
                *(
                    target.core.transform(
                        etl, "b", name, comm=comm, fqn=fqn,
                        etl_args="fail" if i == 0 else "", pipeline=[second],
                    )
                    for i, (name, (comm, fqn)) in enumerate(zip(names, modes, strict=True))
                )
            )
        )  # fmt: skip

    results = target.cluster.run(piped(), timeout=60)
    assert results[0].error is not None and results[0].status == 500
    for name, result in zip(names[1:], results[1:], strict=True):
        assert result.error is None and result.content is not None, (name, result)
        first, seen_second = result.content.rsplit(b"\n", 1)
        # the second stage upper-cased the first stage's output and saw a batch of one
        assert ran_with(result)[0] == 1
        assert first.rsplit(b"\n", 1)[0] == upper(data[name])
        assert seen_second


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_batch_past_the_deadline_answers_504_and_the_server_goes_on(
    target: EmulatedTarget, framework: str
) -> None:
    """AISETL_OBJ_TIMEOUT bounds a batched object as it bounds any other: 504. Python cannot
    stop the batch, which keeps the model until it ends (one batch at a time), so objects
    sent meanwhile may time out too; once it ends, objects are served again."""
    etl = batching(target, framework, 4, "0.005", AISETL_OBJ_TIMEOUT="1")
    data = put(target, [f"{framework}/late/slow", f"{framework}/late/next"])
    slow = target.hpush(etl, "b", f"{framework}/late/slow", etl_args="sleep=3")
    assert slow.error is not None and slow.error.ecode == 504, slow
    assert "Deadline of 1 s (AISETL_OBJ_TIMEOUT)" in slow.error.msg, slow.error.msg
    for _ in range(20):  # bounded: the batch ends 2 s after that answer
        after = target.hpush(etl, "b", f"{framework}/late/next")
        if after.error is None:
            break
        assert after.error.ecode == 504 and "AISETL_OBJ_TIMEOUT" in after.error.msg, after
    assert after.error is None, after
    assert after.content is not None
    assert after.content.rsplit(b"\n", 1)[0] == upper(data[f"{framework}/late/next"])
    assert health_ok(etl)
