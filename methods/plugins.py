"""Methods and metrics from other packages: installed distributions that declare the entry-point
group ``sam3d_bench.methods`` or ``sam3d_bench.metrics``, and modules named by ``--plugin`` or the
``BENCH_PLUGINS`` variable.

They are loaded once per process, on either registry's first lookup (``methods.registry.get_method``
and ``list_methods``, ``bench.evaluation.scores.metric_specs``), after every built-in has registered: a plugin may import the public
contract (``sam3d_bench``) and the registry, which are complete by then. Loading imports the plugin's
modules, whose ``register_method`` decorators record where each method came from
(:class:`MethodSource`); nothing is built.

This distribution declares the group too, for what registers from the harness's side: nnU-Net v2,
whose pipeline reads files (``bench.pipelines.nnunetv2``). Its entry points load first, as built
in, and a failure there is an error, not a warning.

What goes wrong is told apart by whose it is:

- an installed plugin that fails to import is one warning line naming its distribution and the
  error (logger ``sam3d_bench.plugins``); every other method still works;
- a module the user named (``--plugin``, ``BENCH_PLUGINS``) that fails to import, a method name
  that clashes with another method, or a method registered without a required field raises
  :class:`PluginError`: one line, exit code 2 in the CLI.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib import metadata

ENTRY_POINT_GROUP = "sam3d_bench.methods"
METRIC_ENTRY_POINT_GROUP = "sam3d_bench.metrics"  # packages that add metrics (bench.evaluation.scores.register_metric)
PLUGIN_ENV = "BENCH_PLUGINS"  # comma-separated module names, imported like --plugin
log = logging.getLogger("sam3d_bench.plugins")


class PluginError(ValueError):
    """A plugin the harness cannot use as it is: a clash, a broken method definition, a named
    module that does not import. The CLI prints it as one line, exit code 2."""


@dataclass(frozen=True)
class MethodSource:
    """Where a registered method comes from: built in (no module), or a plugin module with the
    installed distribution that holds it (None when the module is not installed, only importable)."""

    module: str = ""
    distribution: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return not self.module

    def describe(self) -> str:
        if self.builtin:
            return "built-in"
        if self.distribution:
            return f"plugin {self.distribution} {self.version}"
        return f"plugin module {self.module} (not an installed distribution)"

    def provenance(self) -> dict[str, str | None] | None:
        """What a run's configuration records (None for a built-in, whose code revision says it)."""
        return None if self.builtin else {"distribution": self.distribution, "version": self.version, "module": self.module}


BUILT_IN = MethodSource()
_loading: MethodSource | None = None  # the plugin being imported, read by register_method
_loaded = False


def source_of(builder_module: str) -> MethodSource:
    """The source a method registered now comes from: the plugin being loaded; else built in when
    the builder lives in ``methods``; else the builder's module and its distribution."""
    if _loading is not None:
        return _loading
    if builder_module == "methods" or builder_module.startswith("methods."):
        return BUILT_IN
    return module_source(builder_module)


def module_source(module: str) -> MethodSource:
    dists = _distributions().get(module.partition(".")[0], [])
    if not dists:
        return MethodSource(module)
    return MethodSource(module, dists[0], metadata.version(dists[0]))


@cache
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@contextmanager
def _registering_as(source: MethodSource) -> Iterator[None]:
    global _loading
    previous, _loading = _loading, source
    try:
        yield
    finally:
        _loading = previous


def named_modules() -> list[str]:
    """The modules ``--plugin`` and ``BENCH_PLUGINS`` name, in order, each once."""
    names = [n.strip() for n in os.environ.get(PLUGIN_ENV, "").split(",")]
    return list(dict.fromkeys(n for n in names if n))


def name_modules(modules: list[str]) -> None:
    """Add ``modules`` to ``BENCH_PLUGINS`` so that this process and every run it starts (worker
    processes, SLURM jobs) load them; call before the registry's first lookup."""
    global _loaded
    if _loaded and set(modules) - set(named_modules()):
        raise PluginError(f"--plugin {', '.join(modules)}: the registry was read before the plugins were named")
    os.environ[PLUGIN_ENV] = ",".join(dict.fromkeys([*named_modules(), *modules]))


def load_plugins() -> None:
    """Import every installed plugin, then every named module, once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    house = set(_distributions().get(__name__.partition(".")[0], []))  # the distribution that holds this package
    entries = [
        e
        for group in (ENTRY_POINT_GROUP, METRIC_ENTRY_POINT_GROUP)
        for e in sorted(metadata.entry_points(group=group), key=lambda e: (_dist_name(e) not in house, e.name))
    ]
    if house and not any(_dist_name(e) in house for e in entries):
        # Installed before the harness declared its own entry points: what registers through them is missing.
        log.warning(
            f"warning: {', '.join(sorted(house))}'s own entry points are missing (an install older than this checkout): "
            "nnunetv2 is not registered; run ./install again"
        )
    for entry in entries:
        dist = entry.dist
        own = _dist_name(entry) in house
        source = BUILT_IN if own else MethodSource(entry.module, dist.name if dist else None, dist.version if dist else None)
        with _registering_as(source):
            try:
                loaded = entry.load()
                if callable(loaded):  # an entry point may name a function that registers
                    loaded()
            except PluginError:
                raise
            except Exception as exc:
                if own:  # the harness's own registration: a bug here is ours, never a quiet gap in the table
                    raise
                # a broken install must not take the other methods down
                log.warning(f"warning: {source.describe()} ({entry.value}) failed to import, what it adds is missing: {_one_line(exc)}")
    for module in named_modules():
        with _registering_as(module_source(module)):
            try:
                importlib.import_module(module)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin module {module!r} (--plugin / {PLUGIN_ENV}) does not import: {_one_line(exc)}") from None


def _dist_name(entry: metadata.EntryPoint) -> str | None:
    return entry.dist.name if entry.dist else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")
