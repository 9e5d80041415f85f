"""What one contact created through the gateway costs the whole suite, by process and by thread (issue 6 (b)).

Run with `.venv/bin/python tests/bench/bench_create_cascade.py` (progress on stderr, figures on stdout). It starts
the suite as `crm run` starts it (tests/support/suite.py, the bench_suite.py way: test-only settings removed, the rate
limit off), sends BENCH_CASCADE_N creates (default 300) through the gateway at BENCH_CASCADE_RATE per second
(default 20: one at a time, as (b)'s 10 % of creates arrive), waits until the suite is idle again, and prints the CPU
each process and each of its threads spent per create, read from /proc. A create sets off: the contacts web process
(the insert and its outbox row), the contacts relay (`crm.contact.created`), the leads and loyalty consumers, the
loyalty relay (`crm.member.enrolled`) and the contacts consumer (its timeline entry), plus PostgreSQL and RabbitMQ.
Idle work in the same span (relay polls, the workers' job loops) is counted too, as it is in (b).

To compare two commits, run it from each checkout with `PYTHONPATH` set to that checkout.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
import requests  # noqa: E402

import bench_suite  # noqa: E402
from tests.support import infra  # noqa: E402
from tests.support import suite as suite_support  # noqa: E402

N = int(os.environ.get("BENCH_CASCADE_N", "300"))
RATE = float(os.environ.get("BENCH_CASCADE_RATE", "20"))
SETTLE_S = 3.0  # after the last create: the events it set off are handled within this (they take milliseconds)
TICK = os.sysconf("SC_CLK_TCK")


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, read from the process with py-spy when it is installed."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return {}
    import subprocess

    out = subprocess.run([str(spy), "dump", "-p", str(pid)], capture_output=True, text=True).stdout
    names = {}
    for line in out.splitlines():
        if line.startswith("Thread ") and '"' in line:
            names[int(line.split()[1])] = line.split('"')[1]
    return names


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process, from /proc."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def service_cpu() -> dict[str, float]:
    """CPU seconds of PostgreSQL's and RabbitMQ's processes."""
    totals = {"postgresql": 0.0, "rabbitmq": 0.0}
    for proc in psutil.process_iter(["name"]):
        group = bench_suite.backing_service(proc.info["name"] or "")
        if group:
            try:
                times = proc.cpu_times()
                totals[group] += times.user + times.system
            except psutil.Error:
                pass
    return totals


def suite_pids(suite) -> dict[str, int]:
    """The process that does the work of each suite process (gunicorn's worker, not its arbiter)."""
    pids = {}
    for name, popen in suite.procs.items():
        proc = psutil.Process(popen.pid)
        children = proc.children()
        pids[name] = children[0].pid if name.startswith("web:") and name != "web:gateway" and children else proc.pid
    return pids


def create_at_rate(gateway_url: str, key: str) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    for i in range(N):
        session.post(f"{gateway_url}/api/v1/contacts", timeout=30, json={
            "email": f"cascade-{run}-{i}@bench.example", "first_name": "Ada", "last_name": "Lovelace",
            "company": "Bench Ltd"}).raise_for_status()
        time.sleep(max(0.0, started + (i + 1) / RATE - time.monotonic()))


def main() -> None:
    vhost, amqp_url = bench_suite.create_vhost()
    dbs = {svc: infra.create_database(svc) for svc in bench_suite.service_names()}
    workdir = Path(tempfile.mkdtemp(prefix="crm-cascade-"))
    suite = suite_support.Suite(workdir, amqp_url, dbs)
    dropped = bench_suite.as_crm_run(suite)
    try:
        bench_suite.log(f"starting the suite in {workdir}")
        suite.start_all()
        key = suite.create_key(scopes=bench_suite.SCOPES, name="bench")
        create_at_rate(suite.gateway_url, key)  # warm-up: every process has served and handled a few already
        time.sleep(SETTLE_S)
        pids = suite_pids(suite)
        names = {name: thread_names(pid) for name, pid in pids.items()}
        before = {name: thread_cpu(pid) for name, pid in pids.items()}
        before_services = service_cpu()
        bench_suite.log(f"{N} creates at {RATE:g}/s through the gateway")
        create_at_rate(suite.gateway_url, key)
        time.sleep(SETTLE_S)
        after = {name: thread_cpu(pid) for name, pid in pids.items()}
        after_services = service_cpu()
    finally:
        suite.stop_all()
        for url in dbs.values():
            infra.drop_database(url)
        infra.delete_vhost(vhost)
    print(f"CPU per contact created through the gateway, {N} creates at {RATE:g}/s, processes as `crm run` starts "
          f"them (test-only settings removed: {', '.join(dropped)})")
    rows = []
    for name in pids:
        spent = {tid: after[name][tid] - before[name].get(tid, 0.0) for tid in after[name]}
        threads = sorted(((ms * 1000 / N, names[name].get(tid, str(tid))) for tid, ms in spent.items()), reverse=True)
        rows.append((sum(ms for ms, _ in threads), name, threads))
    for group in after_services:
        rows.append(((after_services[group] - before_services[group]) * 1000 / N, group, []))
    print("| process | ms of CPU per create | busiest threads (ms) |")
    print("|---|---:|---|")
    for total, name, threads in sorted(rows, reverse=True):
        busiest = ", ".join(f"{thread} {ms:.2f}" for ms, thread in threads[:3] if ms >= 0.05)
        print(f"| {name} | {total:.2f} | {busiest} |")
    print(f"| **all** | **{sum(row[0] for row in rows):.2f}** | |")


if __name__ == "__main__":
    main()
