"""An example mapping step written in Python, built into a component with componentize-py.

It shows the contract from another language: it reads the input JSON, rejects a record with no
name, adds the operator's configured owner team to every opportunity, and logs what it did.
It is also what the host's tests use to prove that a component from another language's
toolchain (which imports WASI 0.2) loads and runs in the sandbox.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, log, types


class WitWorld(wit_world.WitWorld):
    def map(self, ctx: types.Context, input: str, current: str | None) -> str:
        try:
            record = json.loads(input)
        except ValueError as error:
            raise Err(types.MappingError_Reject(f"input is not JSON: {error}"))
        if not isinstance(record, dict) or not record.get("name"):
            raise Err(types.MappingError_Reject("the record has no name"))
        team = config.get("owner-team") or "unassigned"
        record["owningteam_name"] = team
        record["mapped_by"] = {"language": "python", "version": ctx.mapping_version}
        log.log(log.Level.INFO, f"python step mapped {record['name']!r} for team {team}")
        print("stdout from python")
        return json.dumps(record, sort_keys=True)
