"""The plugin host: finds, loads, checks and calls breach plugins.

Built-in plugins and third-party ones are found the same way, through the ``breach`` entry-point
group; a team's own modules come from ``--plugins-dir``. ``BREACH_LOAD_PLUGINS`` (comma-separated
names) restricts which entry-point plugins load. Every failure names the plugin.

Every hook is called through pluggy, so ``BREACH_TRACE_PLUGINS=1`` (pluggy's tracing, written to
this module's debug log) shows each call. Where the host must know which plugin answered (who
registered a notifier) or must keep one plugin's failure from the others (observers), it calls
the hook once per plugin through a caller limited to that plugin (``pm.subset_hook_caller``).
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs, logs
from .audience import AudienceSourceFactory
from .errors import PluginError
from .events import IncidentEvent
from .message import Message
from .notifier import Notifier, resolve_settings
from .receipts import ReceiptHandler

ENTRY_POINT_GROUP = "breach"
log = logging.getLogger(__name__)


@dataclass
class PluginInfo:
    """One loaded plugin, as ``breach plugins`` shows it."""

    name: str
    version: str
    origin: str
    hooks: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    missing_settings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "origin": self.origin,
            "hooks": self.hooks,
            "channels": self.channels,
            "audience_sources": self.sources,
            "missing_settings": self.missing_settings,
        }


class PluginHost:
    """Owns the pluggy manager and the registries the hooks fill."""

    def __init__(
        self,
        *,
        entrypoints: bool = True,
        plugins_dir: Path | None = None,
        extra: Iterable[tuple[str, object]] = (),
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = os.environ if settings is None else settings
        self.pm = pluggy.PluginManager("breach")
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get("BREACH_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda msg: log.debug("%s", msg))
            self.pm.enable_tracing()
        self._versions: dict[str, tuple[str, str]] = {}
        self.notifier_classes: dict[str, tuple[str, type[Notifier]]] = {}
        self.sources: dict[str, tuple[str, AudienceSourceFactory]] = {}
        self.receipt_handlers: dict[str, tuple[str, ReceiptHandler]] = {}
        self._notifiers: dict[str, Notifier] = {}
        self._callers: dict[str, list[tuple[str, pluggy.HookCaller]]] = {}

        from . import sources  # the core's own audience sources, registered like any plugin

        self._register(sources, "core", "builtin", "core")
        if entrypoints:
            self._load_entrypoints()
        if plugins_dir is not None:
            self._load_dir(plugins_dir)
        for name, plugin in extra:
            self._register(plugin, name, "local", "test")
        self._check_pending()
        self._collect()

    # -- loading ---------------------------------------------------------------------------

    def _register(self, plugin: object, name: str, version: str, origin: str) -> None:
        try:
            hash(plugin)  # per-plugin hook callers keep plugins in sets
        except TypeError:
            raise PluginError(
                f"plugin {name!r} is a {type(plugin).__name__}, which cannot be hashed: "
                "register a module or a class instance"
            ) from None
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} is invalid: {exc}") from None
        except ValueError as exc:
            raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from None
        self._versions[name] = (version, origin)
        # a plugin's own log lines are the project's, not a library's
        module = getattr(plugin, "__name__", None) or type(plugin).__module__
        logs.adopt(str(module).split(".")[0])

    def _load_entrypoints(self) -> None:
        allow = os.environ.get("BREACH_LOAD_PLUGINS")
        allowed = {n.strip() for n in allow.split(",") if n.strip()} if allow is not None else None
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # any import failure must name the plugin, not traceback
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
                ) from None
            version = ep.dist.version if ep.dist is not None else "unknown"
            dist = ep.dist.name if ep.dist is not None else "?"
            self._register(plugin, ep.name, version, f"entry point of {dist}")

    def _load_dir(self, directory: Path) -> None:
        if not directory.is_dir():
            raise PluginError(f"--plugins-dir {directory}: no such directory")
        for path in sorted(directory.iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.is_dir() and (path / "__init__.py").exists():
                path = path / "__init__.py"
                stem = path.parent.name
            elif path.suffix == ".py":
                stem = path.stem
            else:
                continue
            self._register(_import_file(path, stem), stem, _version_of(stem), str(path))

    def _check_pending(self) -> None:
        known = hookspecs.hook_names()
        for name, plugin in self.pm.list_name_plugin():
            for attr in dir(plugin):
                impl = getattr(plugin, attr, None)
                if not hasattr(impl, "breach_impl") or attr in known:
                    continue
                hint = difflib.get_close_matches(attr, known, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                raise PluginError(f"plugin {name!r} implements unknown hook {attr!r}{suggestion}")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r}: {exc}") from None

    def _per_plugin(self, hook: str) -> list[tuple[str, pluggy.HookCaller]]:
        """(plugin name, a caller of ``hook`` that reaches only that plugin), for each plugin
        implementing ``hook``, in registration order. Built once: plugins are all registered
        before the host collects anything."""
        if hook not in self._callers:
            caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
            plugins = [plugin for _, plugin in self.pm.list_name_plugin()]
            self._callers[hook] = [
                (impl.plugin_name, self.pm.subset_hook_caller(
                    hook, [p for p in plugins if p is not impl.plugin]))
                for impl in caller.get_hookimpls()
            ]  # fmt: skip
        return self._callers[hook]

    def _collect(self) -> None:
        for plugin, call in self._per_plugin("register_notifiers"):
            call(register=self._notifier_registrar(plugin))
        for plugin, call in self._per_plugin("register_audience_sources"):
            call(register=self._source_registrar(plugin))
        for plugin, call in self._per_plugin("register_receipts"):
            call(register=self._unique_registrar(plugin, "receipt handler",
                                                 self.receipt_handlers))  # fmt: skip

    def _notifier_registrar(self, plugin: str) -> Any:
        def register(cls: type[Notifier]) -> None:
            if not (isinstance(cls, type) and issubclass(cls, Notifier)):
                raise PluginError(f"plugin {plugin!r} registered {cls!r}, not a Notifier subclass")
            for attr in ("name", "channel"):
                if not isinstance(getattr(cls, attr, None), str):
                    raise PluginError(f"plugin {plugin!r}: notifier {cls.__name__} has no {attr}")
            if cls.name in self.notifier_classes:
                other = self.notifier_classes[cls.name][0]
                raise PluginError(
                    f"plugin {plugin!r} registers notifier {cls.name!r}, already registered by "
                    f"plugin {other!r}"
                )
            self.notifier_classes[cls.name] = (plugin, cls)

        return register

    def _source_registrar(self, plugin: str) -> Any:
        return self._unique_registrar(plugin, "audience source", self.sources)

    @staticmethod
    def _unique_registrar(plugin: str, what: str, table: dict[str, tuple[str, Any]]) -> Any:
        def register(name: str, value: Any) -> None:
            if name in table:
                raise PluginError(
                    f"plugin {plugin!r} registers {what} {name!r}, already registered by "
                    f"plugin {table[name][0]!r}"
                )
            table[name] = (plugin, value)

        return register

    # -- queries ---------------------------------------------------------------------------

    def channels(self) -> dict[str, list[str]]:
        """Channel -> names of the notifiers that serve it."""
        out: dict[str, list[str]] = {}
        for name, (_, cls) in sorted(self.notifier_classes.items()):
            out.setdefault(cls.channel, []).append(name)
        return out

    def notifier(self, channel: str, name: str | None = None) -> Notifier:
        """The notifier for ``channel`` (``name`` picks one when several serve it)."""
        candidates = self.channels().get(channel, [])
        if name is not None:
            if name not in candidates:
                raise PluginError(f"no notifier {name!r} for channel {channel!r}")
            chosen = name
        elif len(candidates) == 1:
            chosen = candidates[0]
        elif not candidates:
            raise PluginError(f"no installed plugin provides channel {channel!r}")
        else:
            raise PluginError(
                f"several notifiers serve channel {channel!r} ({', '.join(candidates)}): "
                "name one with `notifier:` in the step"
            )
        if chosen not in self._notifiers:
            cls = self.notifier_classes[chosen][1]
            self._notifiers[chosen] = cls(settings=resolve_settings(cls, self.settings))
        return self._notifiers[chosen]

    def plugin_settings(self, plugin: str) -> dict[str, str]:
        """The resolved settings of every notifier ``plugin`` registers, as its notifiers get
        them: what its receipt handlers receive as ``ReceiptRequest.settings``."""
        out: dict[str, str] = {}
        for owner, cls in self.notifier_classes.values():
            if owner == plugin:
                out.update(resolve_settings(cls, self.settings))
        return out

    def active_notifiers(self) -> list[Notifier]:
        """The notifiers instantiated so far (to close their connections)."""
        return list(self._notifiers.values())

    def source_factory(self, scheme: str) -> AudienceSourceFactory:
        if scheme not in self.sources:
            known = ", ".join(sorted(self.sources))
            raise PluginError(f"no audience source {scheme!r} is installed (known: {known})")
        return self.sources[scheme][1]

    def plugins(self) -> list[PluginInfo]:
        infos: dict[str, PluginInfo] = {}
        for name, _plugin in self.pm.list_name_plugin():
            version, origin = self._versions.get(name, ("unknown", "?"))
            infos[name] = PluginInfo(name=name, version=version, origin=origin)
        for caller in self.pm.hook.__dict__.values():
            if isinstance(caller, pluggy.HookCaller):
                for impl in caller.get_hookimpls():
                    infos[impl.plugin_name].hooks.append(caller.name)
        for nname, (plugin, cls) in self.notifier_classes.items():
            infos[plugin].channels.append(cls.channel)
            notifier = cls(settings=resolve_settings(cls, self.settings))
            infos[plugin].missing_settings += [
                f"{nname}: {name}" for name in notifier.missing_settings()
            ]
        for scheme, (plugin, _) in self.sources.items():
            infos[plugin].sources.append(scheme)
        for info in infos.values():
            info.hooks.sort()
            info.channels = sorted(set(info.channels))
        return sorted(infos.values(), key=lambda i: (i.name != "core", i.name))

    # -- calling ---------------------------------------------------------------------------

    def emit(self, event: IncidentEvent) -> None:
        """Tell every observer; one observer's failure is logged with its name, not raised."""
        for plugin, call in self._per_plugin("incident_event"):
            try:
                call(event=event)
            except Exception as exc:
                log.error(
                    "observer failed",
                    extra={"plugin": plugin, "error": f"{type(exc).__name__}: {exc}"},
                )

    def veto(self, message: Message) -> str | None:
        """The first plugin's reason to hold this message back, or None."""
        result: str | None = self.pm.hook.before_send(message=message)
        return result

    @property
    def has_vetoes(self) -> bool:
        return bool(self.pm.hook.before_send.get_hookimpls())


def _import_file(path: Path, stem: str) -> ModuleType:
    module_name = f"breach_local_{stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {stem!r} ({path}) cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise PluginError(
            f"plugin {stem!r} ({path}) failed to load: {type(exc).__name__}: {exc}"
        ) from None
    return module


def _version_of(stem: str) -> str:
    module = sys.modules.get(f"breach_local_{stem}")
    return str(getattr(module, "__version__", "local"))
