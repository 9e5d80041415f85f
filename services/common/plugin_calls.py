"""Calls into plugins under a time budget: a plugin that hangs costs a decision that plugin's say, not a request.

Python cannot stop a thread, so each call runs on a thread of a small pool and the request waits for it no
longer than the budget. Every plugin has a pool of its own, so one that hangs holds only its own threads.
A call still running past its budget makes its plugin unavailable until that call returns: later decisions
go on without it at once (`plugin_unavailable`) instead of queueing behind the stuck call.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time

from crm_plugins.host import PluginHost, arguments, per_implementation
from crm_plugins.types import PLUGIN_TIMEOUT, PLUGIN_UNAVAILABLE, PluginFailure

from .settings import Settings

logger = logging.getLogger("crm.plugins")

DEFAULT_TIMEOUT_MS = Settings.plugin_timeout_ms  # CRM_PLUGIN_TIMEOUT_MS
# As many as a web process has request threads (CRM_WEB_THREADS' default), so healthy calls do not queue;
# threads start on demand and stop after IDLE_SECONDS without work.
THREADS_PER_PLUGIN = 8
IDLE_SECONDS = 30.0


class _Call:
    """One call on a plugin's pool; `done` is held until the result or the exception is in."""

    __slots__ = ("args", "done", "error", "function", "result", "started_at", "state")

    QUEUED, RUNNING, FINISHED, ABANDONED, OVERDUE = range(5)

    def __init__(self, function, args: tuple):
        self.function, self.args = function, args
        self.result = self.error = None
        self.started_at = 0.0
        self.state = _Call.QUEUED
        self.done = threading.Lock()
        self.done.acquire()


class PluginLane:
    """The calls into one plugin: up to `threads` daemon threads, started on demand, and its overdue calls.

    Daemon threads, not a ThreadPoolExecutor: the executor joins its threads at interpreter exit, and a plugin
    that never returns would then keep the process from ever exiting.
    """

    def __init__(self, plugin: str, threads: int = THREADS_PER_PLUGIN, idle_seconds: float = IDLE_SECONDS):
        self.plugin = plugin
        self.max_threads = threads
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()  # guards the counters below and every _Call.state
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._queue: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._threads = 0  # alive
        self._waiting = 0  # alive and waiting for work
        self._queued = 0  # submitted, not yet taken by a thread
        self.overdue = 0  # calls past their budget that have not returned: the plugin is unavailable meanwhile

    @property
    def available(self) -> bool:
        """False while a call past its budget is still running."""
        return not self.overdue

    def submit(self, function, args: tuple) -> _Call:
        """Queue a call; a thread is started when none is waiting and the pool is not full."""
        call = _Call(function, args)
        if self._pid != os.getpid():
            # A forked child inherits the counters (and the lock, maybe held) but none of the threads.
            self._lock = threading.Lock()
            self._reset()
        with self._lock:
            self._queued += 1
            start = self._queued > self._waiting and self._threads < self.max_threads
            if start:
                self._threads += 1
        self._queue.put(call)
        if start:
            threading.Thread(target=self._work, name=f"crm-plugin-{self.plugin}", daemon=True).start()
        return call

    def outcome(self, call: _Call, deadline: float) -> tuple[bool, object, BaseException | None]:
        """(answered, result, error) of `call`, waiting no later than `deadline` (time.monotonic())."""
        if call.done.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return True, call.result, call.error
        with self._lock:
            if call.state == _Call.FINISHED:  # it answered between the wait and the lock
                return True, call.result, call.error
            if call.state == _Call.QUEUED:
                # Never started (the plugin's threads were all busy): it will not run late, nothing to mark.
                call.state = _Call.ABANDONED
                self._queued -= 1
            else:
                call.state = _Call.OVERDUE
                self.overdue += 1
        return False, None, None

    def _work(self) -> None:
        while True:
            with self._lock:
                self._waiting += 1
            try:
                call = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    self._waiting -= 1
                    if not self._queued:  # else a call came in just now: stay for it
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._waiting -= 1
                if call.state == _Call.ABANDONED:
                    continue  # its caller gave up while it was queued and already took it off the count
                self._queued -= 1
                call.state = _Call.RUNNING
            self._run(call)
            call = None  # an idle thread keeps no arguments or results alive

    def _run(self, call: _Call) -> None:
        call.started_at = time.monotonic()
        try:
            call.result = call.function(*call.args)
        except BaseException as exc:  # noqa: BLE001 - whatever a plugin raises is its caller's to report
            call.error = exc
        with self._lock:
            late = call.state == _Call.OVERDUE
            call.state = _Call.FINISHED
            if late:
                self.overdue -= 1
        call.done.release()
        if late:
            logger.warning("plugin %r returned %.1f s after its call started, past its time budget; it is "
                           "called again", self.plugin, time.monotonic() - call.started_at,
                           extra={"plugin": self.plugin})


class BudgetedPluginHost(PluginHost):
    """The services' plugin host: every implementation runs on its plugin's lane and gets `timeout` seconds.

    The implementations of one hook are started together and share one deadline, so a hook call takes at
    most the budget however many plugins answer it.
    """

    def __init__(self, pm=None, *, timeout: float = DEFAULT_TIMEOUT_MS / 1000,
                 threads_per_plugin: int = THREADS_PER_PLUGIN) -> None:
        super().__init__(pm)
        if timeout <= 0:
            raise ValueError("the time budget must be greater than 0")
        self.timeout = timeout
        self.threads_per_plugin = threads_per_plugin
        self._lanes: dict[str, PluginLane] = {}
        self._lanes_lock = threading.Lock()

    def lane(self, plugin: str) -> PluginLane:
        """The lane of calls into `plugin` (created on first use)."""
        lane = self._lanes.get(plugin)
        if lane is None:
            with self._lanes_lock:
                lane = self._lanes.setdefault(plugin, PluginLane(plugin, self.threads_per_plugin))
        return lane

    def list_plugins(self) -> list[dict]:
        """As PluginHost.list_plugins, with `available`: False while a call past its budget still runs."""
        listed = super().list_plugins()
        for entry in listed:
            lane = self._lanes.get(entry["name"])
            entry["available"] = lane is None or lane.available
        return listed

    def _call_each(self, impls, hook: str, kwargs) -> list[tuple[object, PluginFailure | None]]:
        deadline = time.monotonic() + self.timeout
        started = []
        for impl, each in zip(impls, per_implementation(impls, kwargs), strict=True):
            lane = self.lane(impl.plugin_name)
            call = lane.submit(impl.function, arguments(impl, each)) if lane.available else None
            started.append((impl, lane, call))
        outcomes: list[tuple[object, PluginFailure | None]] = []
        for impl, lane, call in started:
            if call is None:
                outcomes.append((None, PluginFailure(impl.plugin_name, hook, PLUGIN_UNAVAILABLE,
                                                     "an earlier call past its time budget has not returned")))
                continue
            answered, result, error = lane.outcome(call, deadline)
            if not answered:
                outcomes.append((None, self._timed_out(impl.plugin_name, hook, lane)))
            elif error is not None:
                outcomes.append((None, self._raised(impl.plugin_name, hook, error)))
            else:
                outcomes.append((result, None))
        return outcomes

    def _timed_out(self, plugin: str, hook: str, lane: PluginLane) -> PluginFailure:
        budget_ms = round(self.timeout * 1000)
        still_running = "" if lane.available else "; it is skipped until that call returns"
        logger.error("plugin %r did not answer %s within %d ms%s", plugin, hook, budget_ms, still_running,
                     extra={"plugin": plugin, "hook": hook})
        return PluginFailure(plugin, hook, PLUGIN_TIMEOUT, f"no answer within {budget_ms} ms")
