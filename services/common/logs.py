"""One JSON object per log line, carrying the request or event context.

Records are handed to a queue on the calling thread and formatted and written by one listener thread, so a
request never waits for stderr (a pipe the supervisor may drain slowly) nor pays for the JSON encoding.
"""
from __future__ import annotations

import atexit
import copy
import json
import logging
import os
import queue
import sys
import threading
import time
from datetime import datetime, timezone
from logging.handlers import QueueHandler, QueueListener

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

# Records waiting for the listener. Bounded so a stalled stderr costs dropped lines, not unbounded memory.
QUEUE_SIZE = 10_000


class JsonFormatter(logging.Formatter):
    """Formats a record as a single JSON line with every `extra` field."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            # Stack traces go to the log, never to a caller.
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str)


class _BufferingHandler(QueueHandler):
    """Queues a record with only what must be taken on the calling thread; the listener formats it."""

    def __init__(self, records: queue.Queue):
        super().__init__(records)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # QueueHandler.prepare would format the whole line here. Merge the arguments now (they may change
        # after the call returns) and render a traceback while its frames are alive; the rest waits.
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        if _Logging.listener is None and _Logging.output is not None:
            # After the exit flush nothing drains the queue any more: write the late record directly.
            _Logging.output.handle(record)
            return
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


# Once the queue is empty the listener waits this long before looking again, so the records of a busy process
# are written a few at a time; only an idle queue blocks it (and the next record wakes it at once). Waking the
# thread for every record cost more CPU than formatting and writing it (~60 µs of a GET's ~750 µs).
DRAIN_PAUSE_SECONDS = 0.01


class _Listener(QueueListener):
    """Writes queued records on its own thread; answers flush markers once what precedes them is written."""

    def dequeue(self, block: bool) -> logging.LogRecord:
        try:
            return self.queue.get_nowait()
        except queue.Empty:
            if not block:
                raise
        time.sleep(DRAIN_PAUSE_SECONDS)
        return self.queue.get(block)

    def handle(self, record: logging.LogRecord) -> None:
        done = getattr(record, "_crm_flush", None)
        if done is not None:
            for handler in self.handlers:
                handler.flush()
            done.set()
            return
        super().handle(record)


class _Logging:
    """The process's one handler/listener pair (configure_logging may be called once per app)."""

    lock = threading.Lock()
    handler: _BufferingHandler | None = None
    listener: QueueListener | None = None
    output: logging.Handler | None = None


def _stop_listener() -> None:
    """Write out every queued record and stop the listener thread (at exit, or before reconfiguring)."""
    listener, _Logging.listener = _Logging.listener, None
    if listener is not None and listener._thread is not None:
        listener.stop()
    if _Logging.output is not None:
        try:
            _Logging.output.flush()
        except (OSError, ValueError):
            pass  # stderr is already closed (a test runner's capture, a supervisor gone): nothing to flush to


def _restart_after_fork() -> None:
    # A forked child (gunicorn with preload_app) inherits the handler but not the listener thread, and the
    # queue's internal lock may have been held by that thread at the fork: start both afresh.
    if _Logging.handler is not None and _Logging.output is not None:
        _Logging.lock = threading.Lock()
        _Logging.handler.queue = queue.Queue(QUEUE_SIZE)
        _Logging.listener = _Listener(_Logging.handler.queue, _Logging.output)
        _Logging.listener.start()


atexit.register(_stop_listener)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_after_fork)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record to stderr as JSON, through a queue and a listener thread (idempotent)."""
    root = logging.getLogger()
    with _Logging.lock:
        for handler in list(root.handlers):
            if getattr(handler, "_crm", False):
                root.removeHandler(handler)
        _stop_listener()
        output = logging.StreamHandler(sys.stderr)
        output.setFormatter(JsonFormatter(service))
        handler = _BufferingHandler(queue.Queue(QUEUE_SIZE))
        handler._crm = True
        listener = _Listener(handler.queue, output)
        listener.start()
        _Logging.handler, _Logging.listener, _Logging.output = handler, listener, output
        root.addHandler(handler)
        root.setLevel(level)
    logging.getLogger("pika").setLevel(logging.WARNING)


def flush_logs() -> None:
    """Block until every record queued so far is written (tests and shutdown paths)."""
    handler = _Logging.handler
    if handler is None or _Logging.listener is None:
        return
    done = threading.Event()
    handler.queue.put(logging.makeLogRecord({"_crm_flush": done}))
    done.wait(5)
