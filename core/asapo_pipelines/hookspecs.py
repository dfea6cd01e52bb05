"""The plugin API: every hook a plugin may implement, one per concern.

A plugin package declares an entry point in the group ``asapo_pipelines`` that points at a light
module (import nothing heavy at module level) and implements some of these hooks::

    from asapo_pipelines import UnitDescriptor, hookimpl

    @hookimpl
    def register_units(register):
        register(UnitDescriptor(name="acme.denoise", kind="processor", ...))

Core code never calls these hooks directly: it goes through the typed facade in
`asapo_pipelines.plugin_manager`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from asapo_pipelines import PROJECT

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.descriptor import UnitDescriptor

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: What `register_units` receives: call it once per unit, with a descriptor or a mapping of its
#: fields. Each call is validated on its own, so one bad descriptor does not hide the others.
RegisterUnit = Callable[["UnitDescriptor | Mapping[str, Any]"], None]


@hookspec
def register_units(register: RegisterUnit) -> None:
    """Register the units (connectors, processors, agents) this plugin provides.

    Call ``register(descriptor)`` once per unit. The descriptor's ``version`` and
    ``distribution`` are filled in by the catalog from the plugin's distribution; its runtime
    is given as an import string and must not be imported here.
    """
