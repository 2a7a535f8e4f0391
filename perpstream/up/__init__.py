"""``perpstream up`` (docs/failures.md): the command (:mod:`.command`), the prerequisites
check (:mod:`.prerequisites`) and what it shows while it runs (:mod:`.view`)."""

from __future__ import annotations

from perpstream.up.command import register, up_main
from perpstream.up.prerequisites import Check, PrerequisiteError, check_prerequisites, report_prerequisites
from perpstream.up.view import component_notes, component_states

__all__ = ["Check", "PrerequisiteError", "check_prerequisites", "component_notes", "component_states",
           "register", "report_prerequisites", "up_main"]
