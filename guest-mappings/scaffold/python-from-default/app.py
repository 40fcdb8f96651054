"""{{name}}: a cosell mapping step ({{direction}}) written in Python, run after the default
mapping in the pipeline.

cosell runs the default mapping first; this step receives its output, the {{output_type}}
document about to be written (JSON text), and the current {{output_type}} when the record
already exists on the other side (JSON text, else None). It returns the {{output_type}} to write,
or raises Err(...) to refuse the record: MappingError_Reject (bad record), MappingError_Skip
(deliberately not synced) or MappingError_Fail (transient: cosell retries it later).

As generated it changes nothing, so it passes the fixtures (the default mapping's outputs).
Make your change below, then `cosell mapping test dist/{{name_snake}}.wasm --fixtures fixtures`
shows exactly which fields it changes; record the new outputs with `--update` once they are
what you want.

Build: ./build.sh
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, log, types

if TYPE_CHECKING:
    # The documents' generated types, for editors and type checkers; not needed at run time.
    from cosell_types import {{output_type}}


def customise(record: {{output_type}}, current: {{output_type}} | None) -> {{output_type}}:
    """Your changes to the default mapping's output. For example:

        if current is None:  # a new record: start it in the first sales stage
            record["stepname"] = config.get("first-stage") or "1-Qualify"

    Only what the default mapping writes is in `record`: an update of an existing record may
    leave out columns it does not own or that did not change (the name, for one).
    """
    return record


class WitWorld(wit_world.WitWorld):
    def map(self, ctx: types.Context, input: str, current: str | None) -> str:
        try:
            record = json.loads(input)
            counterpart = json.loads(current) if current is not None else None
        except ValueError as error:
            raise Err(types.MappingError_Reject(f"the document is not JSON: {error}"))
        if not isinstance(record, dict):
            raise Err(types.MappingError_Reject("the document is not a JSON object"))
        output = customise(record, counterpart)
        log.log(log.Level.DEBUG, f"{{name}} ran after the default mapping ({ctx.event})")
        return json.dumps(output)
