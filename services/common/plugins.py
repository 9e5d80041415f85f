"""Plugin discovery for the services: built-ins, installed packages (entry points) and a directory of files.

The host itself (isolation, decisions) lives in `crm_plugins.host` so the author's test harness applies the
same rules; the services' host adds a time budget per call (`plugin_calls`). This module decides what gets
loaded and what a listing of it shows.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path

from crm_plugins import PROJECT_NAME
from crm_plugins.host import NAME_TAKEN, PluginError, PluginHost, as_plugin

from .plugin_calls import DEFAULT_TIMEOUT_MS, THREADS_PER_PLUGIN, BudgetedPluginHost

__all__ = ["DEFAULT_PLUGINS", "PluginError", "PluginHost", "build_plugin_host", "plugin_listing"]

# Built-in policies, registered exactly like third-party plugins under "builtin.<last module part>".
DEFAULT_PLUGINS = ["crm_builtin.lead_scoring", "crm_builtin.loyalty_points"]

BUILTIN, ENTRY_POINT, DIRECTORY = "builtin", "entry_point", "directory"


def build_plugin_host(plugins_dir: str | None = None, disabled: Iterable[str] = (), include_builtins: bool = True,
                      include_entry_points: bool = True, *, service_builtins: Iterable[str] = (),
                      timeout_ms: int = DEFAULT_TIMEOUT_MS,
                      threads_per_plugin: int = THREADS_PER_PLUGIN) -> BudgetedPluginHost:
    """Load every enabled plugin and check its hooks; raises PluginError for a misspelt or mis-typed hook.

    `service_builtins` are modules of built-ins only one service calls (the partners' risk rules), loaded after
    DEFAULT_PLUGINS exactly like them, so the other services do not list policies they never apply.

    Each call into a plugin then gets `timeout_ms` (CRM_PLUGIN_TIMEOUT_MS) on a pool of up to
    `threads_per_plugin` threads of that plugin's own.
    """
    host = BudgetedPluginHost(timeout=timeout_ms / 1000, threads_per_plugin=threads_per_plugin)
    for name in disabled:
        host.block(name)
    if include_builtins:
        _load_builtins(host, [*DEFAULT_PLUGINS, *service_builtins])
    if include_entry_points:
        _load_entry_points(host)
    if plugins_dir:
        _load_directory(host, Path(plugins_dir))
    host.check()
    return host


def plugin_listing(host: PluginHost) -> dict:
    """What `GET .../plugins` shows: the loaded plugins, and the ones that failed to load by name and code only
    (the error text may quote a plugin's exception; it went to the log when it happened)."""
    errors = [{"name": e["name"], "source": e["source"], "code": e["code"]} for e in host.errors]
    return {"items": host.list_plugins(), "errors": errors}


def _load_builtins(host: PluginHost, modules: Iterable[str]) -> None:
    for module_name in modules:
        name = "builtin." + module_name.rpartition(".")[2]
        if host.is_blocked(name):
            continue
        # A broken built-in is a bug in this repository, not a deployment problem: let it raise.
        host.register(importlib.import_module(module_name), name=name, source=BUILTIN, origin=module_name)


def _load_entry_points(host: PluginHost) -> None:
    # Like pluggy's load_setuptools_entrypoints, but one broken package is reported instead of stopping the
    # others from loading, and each plugin remembers which distribution it came from.
    for ep in sorted(importlib.metadata.entry_points(group=PROJECT_NAME), key=lambda e: e.name):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
        if host.is_blocked(ep.name):
            continue
        if host.pm.has_plugin(ep.name):
            host.add_error(ep.name, ENTRY_POINT, f"name already taken; {dist} not loaded", NAME_TAKEN)
            continue
        try:
            plugin = as_plugin(ep.load())
        except Exception as exc:  # noqa: BLE001 - any import-time failure of a package is reported, not fatal
            host.add_error(ep.name, ENTRY_POINT, f"{dist}: {type(exc).__name__}: {exc}")
            continue
        host.register(plugin, name=ep.name, source=ENTRY_POINT, origin=dist)


def _load_directory(host: PluginHost, directory: Path) -> None:
    if not directory.is_dir():
        raise PluginError(f"CRM_PLUGINS_DIR {str(directory)!r} is not a directory")
    for path in sorted(directory.glob("*.py")):
        name = path.stem
        if name.startswith("_") or host.is_blocked(name):
            continue
        if host.pm.has_plugin(name):
            host.add_error(name, DIRECTORY, f"name already taken; {path} not loaded", NAME_TAKEN)
            continue
        try:
            plugin = _module_plugin(_import_file(path))
        except Exception as exc:  # noqa: BLE001 - any import-time failure of a file is reported, not fatal
            host.add_error(name, DIRECTORY, f"{path}: {type(exc).__name__}: {exc}")
            continue
        host.register(plugin, name=name, source=DIRECTORY, origin=str(path))


def _module_plugin(module):
    """A file may expose a class or instance as `plugin`; otherwise its marked functions are the plugin."""
    return as_plugin(getattr(module, "plugin", module))


def _import_file(path: Path):
    module_name = f"crm_dir_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as a normal import would be: dataclasses and pickling look the module up.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
