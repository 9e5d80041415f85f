"""What the gateway assembles from its upstreams: readiness probes in parallel and one OpenAPI document."""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait


def probe_all(checks: Mapping[str, Callable[[], object]], timeout: float) -> dict[str, str | None]:
    """Run every check at once; {name: None when it passed, else why it failed}, within about `timeout`."""
    if not checks:
        return {}
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="crm-readyz")
    try:
        futures = {name: pool.submit(check) for name, check in checks.items()}
        wait(futures.values(), timeout=timeout)
        results: dict[str, str | None] = {}
        for name, future in futures.items():
            if not future.done():
                results[name] = "timeout"
                continue
            exc = future.exception()
            results[name] = None if exc is None else _describe(exc)
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code}"
    return type(exc).__name__


def _rewrite_refs(node, renames: Mapping[str, str]):
    if isinstance(node, dict):
        return {k: (renames.get(v, v) if k == "$ref" and isinstance(v, str) else _rewrite_refs(v, renames))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def merge_openapi(own: dict, upstream_specs: Mapping[str, dict], serves: Callable[[str, str], bool]) -> dict:
    """The gateway's spec plus each upstream's paths (those the gateway routes to it) and components.

    A component an upstream defines differently under a name already taken is renamed
    `<Upstream><Name>` in that upstream's part, and its references with it.
    """
    merged = copy.deepcopy(own)
    paths = merged.setdefault("paths", {})
    components = merged.setdefault("components", {})
    tags = merged.setdefault("tags", [])
    for upstream, spec in upstream_specs.items():
        their_components = {s: dict(entries) for s, entries in (spec.get("components") or {}).items()
                            if s != "securitySchemes" and isinstance(entries, dict)}
        renames: dict[str, str] = {}
        for section, entries in their_components.items():
            ours = components.get(section, {})
            for name, definition in list(entries.items()):
                if name in ours and ours[name] != definition:
                    new_name, n = f"{upstream.capitalize()}{name}", 2
                    while new_name in ours or new_name in entries:
                        new_name, n = f"{upstream.capitalize()}{name}{n}", n + 1
                    renames[f"#/components/{section}/{name}"] = f"#/components/{section}/{new_name}"
                    entries[new_name] = entries.pop(name)
        their_paths = spec.get("paths") or {}
        if renames:
            their_components = _rewrite_refs(their_components, renames)
            their_paths = _rewrite_refs(their_paths, renames)
        for section, entries in their_components.items():
            target = components.setdefault(section, {})
            for name, definition in entries.items():
                target.setdefault(name, copy.deepcopy(definition))
        for path, item in their_paths.items():
            if serves(path, upstream):
                paths[path] = copy.deepcopy(item)
        known = {t.get("name") for t in tags}
        for tag in spec.get("tags") or []:
            if tag.get("name") not in known:
                tags.append(copy.deepcopy(tag))
                known.add(tag.get("name"))
    return merged
