"""Evidence events: new evidence about a subject evaluates the enabled policies on it, in the consumer's batch.

A service lists the event types that bring evidence in its adapter (`evidence_events`). `with_evaluation` wraps
the worker's handlers of those types: a handler marked `@evaluates_termination` (one that exists only for this)
is given the evaluation as `evaluate=`; any other handler of such a type (contacts' purchase facts) runs first
and the evaluation after it, in the same transaction. The inbox key stays the handler's own name.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from services.common.consumer import is_batch_handler
from services.common.runtime import Runtime

from .adapter import TerminationKit
from .recommendations import evaluate_events


def evaluates_termination(handler: Callable) -> Callable:
    """Mark a batch handler `handler(uow, events, *, evaluate)` that only evaluates termination evidence."""
    handler.evaluates_termination = True
    return handler


def with_evaluation(handlers: Mapping[str, Callable], runtime: Runtime, kit: TerminationKit) -> dict[str, Callable]:
    """`handlers` where the handler of each of `kit`'s evidence event types also evaluates the subjects named."""

    def evaluate(uow, events):
        evaluate_events(uow, kit, runtime.plugins, runtime.settings, events)

    def told(handler):
        if getattr(handler, "evaluates_termination", False):
            return functools.update_wrapper(functools.partial(handler, evaluate=evaluate), handler)
        if not is_batch_handler(handler):
            raise TypeError(f"{handler!r} must handle batches to take termination evidence")

        @functools.wraps(handler)
        def handled_then_evaluated(uow, events):
            handler(uow, events)
            evaluate(uow, events)

        return handled_then_evaluated

    return {event_type: told(handler) if event_type in kit.adapter.evidence_events else handler
            for event_type, handler in handlers.items()}
