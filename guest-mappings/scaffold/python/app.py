"""{{name}}: a cosell mapping step ({{direction}}) written in Python.

cosell calls `map` once per record with the {{input_type}} document (JSON text) and, when the
record already exists on the other side, the current {{output_type}} (JSON text, else None).
Return the {{output_type}} to write as JSON text, or raise Err(...) to refuse the record:
MappingError_Reject (the record is bad: retrying will not help), MappingError_Skip (the record
is deliberately not synced) or MappingError_Fail (transient: cosell retries it later).

This starter maps a few fields; both directions are here, `map` calls the one for
{{direction}}: delete the other. Use `ctx.timestamp` rather than a clock, so a re-run of the
same record gives the same output.

Build: ./build.sh    Test: cosell mapping test dist/{{name_snake}}.wasm --fixtures fixtures
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, log, types

if TYPE_CHECKING:
    # The documents' generated types, for editors and type checkers; not needed at run time.
    from cosell_types import Opportunity, Referral


def referral_to_opportunity(referral: Referral, current: Opportunity | None) -> Opportunity:
    """The opportunity's name, value, currency and close date from a Partner Center referral."""
    name = referral.get("name")
    if not name:
        raise Err(types.MappingError_Reject("the referral has no name"))
    details = referral.get("details") or {}
    opportunity: Opportunity = {"name": (config.get("name-prefix") or "") + name}
    if details.get("dealValue") is not None:
        opportunity["estimatedvalue"] = float(details["dealValue"])
    if details.get("currency"):
        opportunity["transactioncurrencyid"] = {"isocurrencycode": details["currency"].upper()}
    if details.get("closingDateTime"):
        opportunity["estimatedclosedate"] = details["closingDateTime"][:10]
    if current is None:
        # Only a new opportunity gets a description: an existing one keeps the seller's own.
        opportunity["description"] = f"Partner Center referral {referral.get('id', '')}"
    return opportunity


def opportunity_to_referral(opportunity: Opportunity, current: Referral | None) -> Referral:
    """A Partner Center referral's name and deal details from a CRM opportunity."""
    if opportunity.get("cosell_syncwithpartnercenter") is not True:
        raise Err(types.MappingError_Skip("the opportunity is not marked to sync with Partner Center"))
    name = opportunity.get("name")
    if not name:
        raise Err(types.MappingError_Reject("the opportunity has no name"))
    details: dict = {}
    if opportunity.get("estimatedvalue") is not None:
        details["dealValue"] = float(opportunity["estimatedvalue"])
    currency = (opportunity.get("transactioncurrencyid") or {}).get("isocurrencycode")
    if currency:
        details["currency"] = currency.upper()
    referral: Referral = {"name": name, "details": details}
    if current is not None:
        # An update names the referral it changes.
        referral["id"] = current.get("id")
        referral["eTag"] = current.get("eTag")
    return referral


MAPPINGS = {
    "partner-center-to-crm": referral_to_opportunity,
    "crm-to-partner-center": opportunity_to_referral,
}


class WitWorld(wit_world.WitWorld):
    def map(self, ctx: types.Context, input: str, current: str | None) -> str:
        try:
            record = json.loads(input)
            counterpart = json.loads(current) if current is not None else None
        except ValueError as error:
            raise Err(types.MappingError_Reject(f"the document is not JSON: {error}"))
        if not isinstance(record, dict):
            raise Err(types.MappingError_Reject("the document is not a JSON object"))
        output = MAPPINGS["{{direction}}"](record, counterpart)
        log.log(log.Level.INFO, f"{{name}} mapped {output.get('name')!r} ({ctx.event})")
        return json.dumps(output, sort_keys=True)
