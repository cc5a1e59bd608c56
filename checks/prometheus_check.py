"""A real Prometheus server scrapes every aisetl server: the counts it stores are the objects sent.

``python -m checks.prometheus_check`` (what ``make prometheus-check`` runs) needs the
``prometheus`` binary (Debian: ``apt-get install prometheus``). It starts the three servers
with two workers each, sends each a known mix of objects through the emulated target, lets
Prometheus scrape them every second, and then asks Prometheus (its HTTP API) what it stored:
every target up with no scrape error, ``aisetl_objects_total`` by comm type, outcome and
status equal to what was sent, nothing in flight, and the process metrics of every worker.
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from aisetl.target import ETL, EmulatedTarget, free_port

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("http", "flask", "fastapi")
#: etl_args -> (outcome, status); the objects each server gets of each kind.
MIX = {"": ("ok", "200", 20), "reject": ("failed", "415", 5), "fail": ("failed", "500", 3)}
SCRAPE_INTERVAL = "1s"


def comms(framework: str) -> tuple[str, ...]:
    return ("hpush", "hpull", "ws") if framework == "fastapi" else ("hpush", "hpull")


def api(base: str, path: str, **params: str) -> Any:
    """One Prometheus API call; its ``data``."""
    url = f"{base}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    if answer.get("status") != "success":
        raise RuntimeError(f"{url}: {answer}")
    return answer["data"]


def launch(target: EmulatedTarget, framework: str) -> ETL:
    argv = [
        sys.executable, "-m", "aisetl", "serve", "tests.transformers:Upper",
        "--server", framework, "--host", "127.0.0.1", "--port", "{port}", "--workers", "2",
    ]  # fmt: skip
    return target.launch(
        f"{framework}-scraped",
        argv,
        comm="ws" if framework == "fastapi" else "hpush",
        env={"PYTHONPATH": str(REPO)},
        cwd=str(REPO),
        init_timeout=60,
    )


def send(target: EmulatedTarget, etl: ETL, framework: str) -> collections.Counter[tuple[str, ...]]:
    """The mix over every comm type; what each object's count should be."""
    bucket = target.bucket(f"b-{framework}")
    expected: collections.Counter[tuple[str, ...]] = collections.Counter()
    for comm in comms(framework):
        for args, (outcome, status, count) in MIX.items():
            for i in range(count):
                name = f"{comm}-{args or 'ok'}-{i}"
                bucket.put(name, f"object {i}".encode())
                target.transform(etl, bucket, name, comm=comm, etl_args=args)
                expected[comm, outcome, status] += 1
    return expected


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def main() -> int:
    binary = shutil.which("prometheus")
    if binary is None:
        print(
            "prometheus-check: no prometheus binary on PATH; install Debian's package "
            "(as root: apt-get install prometheus) or put one on PATH",
            file=sys.stderr,
        )
        return 2
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    print(f"prometheus-check: {(version.stdout or version.stderr).splitlines()[0]}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="aisetl-prom-") as root, EmulatedTarget(root) as target:
        etls = {framework: launch(target, framework) for framework in FRAMEWORKS}
        expected = {framework: send(target, etls[framework], framework) for framework in etls}
        instances = {etl.url().removeprefix("http://"): fw for fw, etl in etls.items()}
        config = Path(root) / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_INTERVAL}\n"
            "scrape_configs:\n"
            "  - job_name: aisetl\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(sorted(instances))}\n"
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(Path(root) / "prometheus.log", "w")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={Path(root) / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: _ready(base), 60, "Prometheus to start")

            def all_up() -> list[dict[str, Any]] | None:
                active = api(base, "targets")["activeTargets"]
                done = len(active) == len(instances) and all(
                    t["health"] == "up" and t["lastScrape"] > "0001" for t in active
                )
                return active if done else None

            targets = wait_until(all_up, 60, "every server to be scraped")
            for t in targets:
                print(
                    f"  target {instances[t['labels']['instance']]:8} {t['scrapeUrl']}: "
                    f"{t['health']}, last scrape {t['lastScrapeDuration'] * 1000:.1f} ms"
                    + (f", error {t['lastError']}" if t["lastError"] else "")
                )
                ok = ok and not t["lastError"]
            time.sleep(2.5)  # a scrape or two after every object was answered
            query = "sum by (instance, comm, outcome, status) (aisetl_objects_total)"
            stored: dict[str, collections.Counter[tuple[str, ...]]] = collections.defaultdict(
                collections.Counter
            )
            for series in api(base, "query", query=query)["result"]:
                m = series["metric"]
                key = (m["comm"], m["outcome"], m["status"])
                stored[instances[m["instance"]]][key] += int(float(series["value"][1]))
            for framework in FRAMEWORKS:
                same = dict(stored[framework]) == dict(expected[framework])
                ok = ok and same
                total = sum(expected[framework].values())
                print(
                    f"  {framework:8} objects sent {total}, Prometheus has "
                    f"{sum(stored[framework].values())}: "
                    + ("equal by comm type, outcome and status" if same else "DIFFERENT")
                )
                if not same:
                    print(f"    sent {dict(expected[framework])}")
                    print(f"    stored {dict(stored[framework])}")
            checks = {
                "aisetl_objects_in_flight": "sum by (instance) (aisetl_objects_in_flight)",
                "processes": "count by (instance) (process_resident_memory_bytes)",
                "RSS MiB": "sum by (instance) (process_resident_memory_bytes) / 2^20",
                "samples per scrape": "scrape_samples_scraped",
                "scrape ms": "scrape_duration_seconds * 1000",
                "request p99 ms": "1000 * histogram_quantile(0.99, sum by (instance, le) "
                "(aisetl_request_duration_seconds_bucket))",
                "ws unreported failures": "sum by (instance) (aisetl_unreported_failures_total)",
            }
            for label, expression in checks.items():
                values = {
                    instances[s["metric"]["instance"]]: float(s["value"][1])
                    for s in api(base, "query", query=expression)["result"]
                }
                shown = ", ".join(
                    f"{fw} {values[fw]:.4g}" if fw in values else f"{fw} -" for fw in FRAMEWORKS
                )
                print(f"  {label}: {shown}")
                if label == "aisetl_objects_in_flight":
                    ok = ok and all(values.get(fw) == 0 for fw in FRAMEWORKS)
                if label == "processes":  # the supervisor (or gunicorn's arbiter), 2 workers
                    ok = ok and all(values.get(fw) == 3 for fw in FRAMEWORKS)
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
            log.close()
            problems = (Path(root) / "prometheus.log").read_text().strip()
            if problems:
                print("  prometheus log:\n    " + problems.replace("\n", "\n    ")[-3000:])
    print("prometheus-check: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
