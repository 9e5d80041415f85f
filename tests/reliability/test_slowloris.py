"""Slow clients cannot starve the gateway: it keeps answering while 100 connections dribble their headers.

A slowloris attack opens many connections and sends each request's headers a byte at a time, never finishing.
A server that hands a connection to a worker thread before its request is complete ties up one thread per
such connection, and once all are taken nobody else is answered. The gateway runs here as `crm run` starts it
(its own gunicorn command line and configuration), and must answer /healthz within 5 s throughout.
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest
import requests

from crm.processes import web_argv
from crm.registry import SUITE
from tests.support import infra
from tests.support.suite import stop_process, wait_until

pytestmark = pytest.mark.reliability

SLOW_CONNECTIONS = 100
ATTACK_SECONDS = 12.0


@pytest.fixture
def gateway_process(tmp_path):
    database = infra.create_database("gateway")
    SUITE.migrate("gateway", database)
    port = infra.free_port()
    env = {**os.environ, "GATEWAY_DATABASE_URL": database, "CRM_IDENTITY_PRIVATE_KEY": infra.IDENTITY_PRIVATE_KEY,
           "CRM_DATA_DIR": str(tmp_path), "CRM_LOG_LEVEL": "WARNING"}
    entry = SUITE.entry("gateway")
    log = open(tmp_path / "gateway.log", "wb")
    proc = subprocess.Popen(web_argv(entry, f"127.0.0.1:{port}", env), env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    def healthy() -> bool:
        assert proc.poll() is None, f"the gateway exited: {(tmp_path / 'gateway.log').read_text()[-2000:]}"
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(healthy, timeout=60, message="the gateway answers /healthz")
        yield port
    finally:
        stop_process(proc)
        log.close()
        infra.drop_database(database)


def _dribble(port: int, stop: threading.Event, opened: list) -> None:
    """One slow client: a request whose headers arrive one byte every half second and never end."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n" + b"X-Pad: " + b"a" * 4096
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return
    opened.append(sock)
    try:
        for byte in head:
            if stop.wait(0.5):
                return
            sock.sendall(bytes([byte]))
    except OSError:
        return  # the server may drop a client it judges too slow: that is a fine defence too


def test_the_gateway_answers_healthz_while_100_connections_send_headers_byte_by_byte(gateway_process):
    port = gateway_process
    stop, opened = threading.Event(), []
    attackers = [threading.Thread(target=_dribble, args=(port, stop, opened), daemon=True)
                 for _ in range(SLOW_CONNECTIONS)]
    try:
        for t in attackers:
            t.start()
        time.sleep(2.0)  # every slow connection is open and has sent its first bytes
        assert len(opened) >= SLOW_CONNECTIONS * 0.9, "the attack did not get its connections open"
        answered = 0
        end = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < end:
            # A fresh connection each time, as a load balancer's health check makes.
            response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5,
                                    headers={"Connection": "close"})
            assert response.status_code == 200
            answered += 1
            time.sleep(0.5)
        assert answered >= 10
    finally:
        stop.set()
        for sock in opened:
            sock.close()
        for t in attackers:
            t.join(5)
