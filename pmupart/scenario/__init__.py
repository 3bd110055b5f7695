"""pmupart.scenario: scenario TOML files (schema, loader, examples).

``load_scenario(path)`` / ``load_scenario_text(text)`` give a
:class:`~pmupart.sim.spec.ScenarioSpec` for :func:`pmupart.sim.run_scenario`; errors are
:class:`ScenarioError` (file, line, field path, what was expected and found).  The format
is documented in ``docs/scenario.md``.
"""

from pmupart.scenario.dump import dump_scenario
from pmupart.scenario.loader import (
    ScenarioError,
    format_duration,
    load_scenario,
    load_scenario_mapping,
    load_scenario_text,
    parse_duration,
)

__all__ = [
    "ScenarioError", "dump_scenario", "format_duration", "load_scenario", "load_scenario_mapping",
    "load_scenario_text", "parse_duration",
]
