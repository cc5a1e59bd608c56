"""``--metrics`` of ``aisetl run`` and ``aisetl bench``: the server's own ``/metrics``, summed up.

What the server counted (``GET /metrics``, parsed with prometheus_client's parser): objects by
comm type, outcome and status, bytes, durations, direct puts, ws, deadlines, memory, and its
processes' CPU, memory and open files.
"""

from __future__ import annotations

import collections
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from aisetl.cli.progress import human_bytes

Samples = dict[str, list[tuple[dict[str, str], float]]]


def fetch(url: str, timeout: float = 10.0) -> Samples:
    """Every sample of ``url``/metrics by name; raises ``OSError`` when it cannot be had."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as response:
        text = response.read().decode("utf-8", "replace")
    samples: Samples = collections.defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), sample.value))
    return samples


def _sum(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for found, value in samples.get(name, [])
        if all(found.get(k) == v for k, v in labels.items())
    )


def _mean_ms(samples: Samples, name: str) -> str:
    count = _sum(samples, f"{name}_count")
    return f"mean {_sum(samples, f'{name}_sum') / count * 1000:.2f} ms" if count else "none"


def describe(samples: Samples) -> list[str]:
    """The summary lines of one scrape."""
    by_kind = collections.Counter[str]()
    for labels, value in samples.get("aisetl_objects_total", []):
        if value:
            by_kind[f"{labels['comm']} {labels['outcome']} {labels['status']}"] += int(value)
    total = sum(by_kind.values())
    kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(by_kind.items()))
    pids = {labels.get("pid", "") for labels, _ in samples.get("process_cpu_seconds_total", [])}
    return [
        f"objects: {total}" + (f" ({kinds})" if kinds else ""),
        f"bytes: {human_bytes(int(_sum(samples, 'aisetl_input_bytes_total')))} in, "
        f"{human_bytes(int(_sum(samples, 'aisetl_output_bytes_total')))} out",
        f"request duration: {_mean_ms(samples, 'aisetl_request_duration_seconds')}; "
        f"transform: {_mean_ms(samples, 'aisetl_transform_duration_seconds')}",
        f"direct puts: {int(_sum(samples, 'aisetl_direct_put_attempts_total'))} attempts, "
        f"{int(_sum(samples, 'aisetl_direct_put_retries_total'))} retries, "
        f"{int(_sum(samples, 'aisetl_direct_put_failures_total'))} failed",
        f"ws: {int(_sum(samples, 'aisetl_ws_connections_open'))} connections open, "
        f"{int(_sum(samples, 'aisetl_unreported_failures_total'))} failures the target "
        "could not see",
        f"deadlines: {by_kind_total(by_kind, 'timeout')} objects past AISETL_OBJ_TIMEOUT, "
        f"{int(_sum(samples, 'aisetl_transform_overruns_total'))} transforms overran",
        f"memory bound: {human_bytes(int(_sum(samples, 'aisetl_inflight_bytes_limit')))} "
        f"over all workers (0: none), {int(_sum(samples, 'aisetl_memory_waits_total'))} "
        "bodies waited for room",
        f"processes: {len(pids)}, CPU {_sum(samples, 'process_cpu_seconds_total'):.2f} s, "
        f"RSS {human_bytes(int(_sum(samples, 'process_resident_memory_bytes')))}, "
        f"{int(_sum(samples, 'process_open_fds'))} open files",
    ]


def by_kind_total(by_kind: collections.Counter[str], outcome: str) -> int:
    """Objects of one outcome, whatever their comm type and status."""
    return sum(count for kind, count in by_kind.items() if kind.split()[1] == outcome)


def summary(name: str, url: str) -> str:
    """``server metrics of NAME`` and its lines, or why there are none."""
    head = f"server metrics of {name} (GET {url}/metrics):"
    try:
        samples = fetch(url)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip()
        return f"{head} none: {exc.code} {detail}"
    except OSError as exc:
        return f"{head} none: {exc}"
    return "\n".join([head, *(f"  {line}" for line in describe(samples))])
