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


#: What `check_online` receives to report a finding: the YAML path of the value at fault (e.g.
#: ``("units", "queue", "params", "plan", "name")``), a code (`P501` refused, `P502` could not
#: ask) and one sentence.
ReportFinding = Callable[[tuple[str, ...], str, str], None]


@hookspec
def check_online(pipeline: Any, catalog: Any, report: ReportFinding) -> None:
    """Check a valid pipeline against the live services its units name (`pipeline validate
    --online`): e.g. that a queue server allows the plans the file names.

    Called only for plugins whose units the pipeline uses; `pipeline.params_for(instance,
    catalog)` gives a unit's params. Every request must have a deadline; report a service that
    does not answer with `P502` rather than raising.
    """
