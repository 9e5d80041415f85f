"""JSON logs written by a listener thread: one line per record, the request thread only queues it."""
from __future__ import annotations

import io
import json
import logging
import queue
import sys
import threading

import pytest

from services.common import logs
from services.common.logs import configure_logging, flush_logs


class _Recording(io.StringIO):
    """A stream that remembers which threads wrote to it."""

    def __init__(self):
        super().__init__()
        self.writers: set[str] = set()

    def write(self, text):
        self.writers.add(threading.current_thread().name)
        return super().write(text)


@pytest.fixture
def stream(monkeypatch):
    level = logging.getLogger().level
    out = _Recording()
    monkeypatch.setattr(sys, "stderr", out)
    configure_logging("tests", "INFO")
    yield out
    flush_logs()
    monkeypatch.undo()
    configure_logging("tests", logging.getLevelName(level))


def _lines(stream) -> list[dict]:
    flush_logs()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_becomes_one_json_line_written_off_the_calling_thread(stream):
    logging.getLogger("crm.http").info("GET %s %s", "/api/v1/contacts", 200,
                                       extra={"event": "http.request", "request_id": "r-1", "status": 200})

    (line,) = _lines(stream)
    assert line["msg"] == "GET /api/v1/contacts 200"
    assert (line["service"], line["logger"], line["level"]) == ("tests", "crm.http", "info")
    assert (line["event"], line["request_id"], line["status"]) == ("http.request", "r-1", 200)
    assert threading.current_thread().name not in stream.writers


def test_arguments_are_taken_when_logged_not_when_written(stream):
    seen = {"state": "before"}
    logging.getLogger("crm.test").info("state %s", seen)
    seen["state"] = "after"

    (line,) = _lines(stream)
    assert line["msg"] == "state {'state': 'before'}"


def test_a_traceback_is_kept_in_the_line(stream):
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("crm.test").exception("unhandled error")

    (line,) = _lines(stream)
    assert "ValueError: broken" in line["exc"]


def test_records_from_many_threads_each_make_one_line(stream):
    def log_some(n):
        for i in range(50):
            logging.getLogger("crm.test").info("thread %s line %s", n, i)

    threads = [threading.Thread(target=log_some, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(_lines(stream)) == 200


def test_a_full_queue_drops_records_instead_of_blocking_the_caller(stream):
    handler = logs._BufferingHandler(queue.Queue(1))
    record = logging.makeLogRecord({"msg": "x"})

    handler.handle(record)
    handler.handle(record)

    assert handler.dropped == 1


def test_configuring_again_keeps_one_handler(stream, monkeypatch):
    monkeypatch.setattr(sys, "stderr", stream)  # pytest swaps sys.stderr between setup and call
    configure_logging("tests", "INFO")
    logging.getLogger("crm.test").info("once")

    assert [line["msg"] for line in _lines(stream)] == ["once"]
    assert sum(getattr(h, "_crm", False) for h in logging.getLogger().handlers) == 1
