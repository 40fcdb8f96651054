"""Drives the Dataverse emulator with Microsoft's Python SDK, unpatched.

Every check is a call a user of the SDK makes; a check passes only when the SDK call succeeds
and the answer holds what was written. The SDK is used exactly as published: the only things
given to it are the environment's HTTPS URL and a credential (an object with `get_token`, as
azure-identity's are), and `REQUESTS_CA_BUNDLE` names the emulator's self-signed certificate.

Environment: DATAVERSE_URL (https://127.0.0.1:port), TOKEN_URL, CLIENT_ID, CLIENT_SECRET.
Prints one line per check and exits non-zero on the first failure.
"""

import os
import sys
import traceback

import requests
from azure.core.credentials import AccessToken
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.models.upsert import UpsertItem


class ClientSecretCredential:
    """The client-credentials grant against the emulator's token endpoint (what
    azure-identity's ClientSecretCredential does against Microsoft Entra ID)."""

    def __init__(self, token_url, client_id, client_secret):
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret

    def get_token(self, *scopes, **kwargs):
        answer = requests.post(
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "scope": " ".join(scopes),
            },
            timeout=10,
        )
        answer.raise_for_status()
        body = answer.json()
        return AccessToken(body["access_token"], 4102444800)


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok   {name}")


def main():
    client = DataverseClient(
        os.environ["DATAVERSE_URL"],
        ClientSecretCredential(
            os.environ["TOKEN_URL"], os.environ["CLIENT_ID"], os.environ["CLIENT_SECRET"]
        ),
    )

    # Table metadata.
    table = client.tables.get("account")
    check("tables.get finds the account table", table is not None, table)
    check(
        "its entity set and primary key",
        table.entity_set_name == "accounts" and table.primary_id_attribute == "accountid",
        table,
    )
    columns = client.tables.list_columns("account", select=["LogicalName", "AttributeType"])
    names = {c["LogicalName"] for c in columns}
    check("tables.list_columns lists the columns", {"name", "accountnumber"} <= names, sorted(names))
    name = client.tables.get_column("account", "name")
    check(
        "tables.get_column reads one column",
        name is not None and name["LogicalName"] == "name" and name["MaxLength"] > 0,
        name,
    )
    check("unknown tables are None", client.tables.get("nosuchtable") is None)
    tables = {t["LogicalName"] for t in client.tables.list()}
    check("tables.list lists the tables", {"account", "contact", "opportunity"} <= tables, sorted(tables))

    # Create, read, update, delete.
    account_id = client.records.create("account", {"name": "Contoso (SDK)", "accountnumber": "SDK-1"})
    check("records.create answers the new id", len(account_id) == 36, account_id)
    row = client.records.retrieve("account", account_id, select=["name", "accountnumber"])
    check("records.retrieve reads it", row is not None and row["name"] == "Contoso (SDK)", row)
    client.records.update("account", account_id, {"accountnumber": "SDK-2"})
    row = client.records.retrieve("account", account_id, select=["accountnumber"])
    check("records.update writes it", row["accountnumber"] == "SDK-2", row)

    # A choice column written by its label: the SDK reads the options' labels first.
    opportunity_id = client.records.create(
        "opportunity",
        {"name": "Deal (SDK)", "salesstage": "Propose",
         "customerid_account@odata.bind": f"/accounts({account_id})"},
    )
    deal = client.records.retrieve("opportunity", opportunity_id, select=["salesstage"])
    check("a choice label becomes its value", deal["salesstage"] == 2, deal)

    # Bulk create, then bulk update.
    ids = client.records.create(
        "account", [{"name": f"Bulk {n} (SDK)", "accountnumber": f"BULK-{n}"} for n in range(7)]
    )
    check("records.create of a list uses CreateMultiple and answers every id", len(ids) == 7, ids)
    client.records.update("account", ids, {"description": "updated in bulk"})
    updated = client.records.retrieve("account", ids[6], select=["description"])
    check("records.update of many ids uses UpdateMultiple", updated["description"] == "updated in bulk", updated)

    # Upserts by an alternate key (UpsertMultiple for several).
    key = client.tables.create_alternate_key("account", "new_AccountNumberKey", ["accountnumber"])
    check("tables.create_alternate_key adds a key", key.key_attributes == ["accountnumber"], key)
    client.records.upsert(
        "account",
        [UpsertItem(alternate_key={"accountnumber": f"UPS-{n}"}, record={"name": f"Upserted {n} (SDK)"})
         for n in range(3)],
    )
    client.records.upsert(
        "account",
        [UpsertItem(alternate_key={"accountnumber": "UPS-0"}, record={"name": "Upserted again (SDK)"}),
         UpsertItem(alternate_key={"accountnumber": "UPS-3"}, record={"name": "Upserted 3 (SDK)"})],
    )
    upserted = client.records.list("account", filter="startswith(name,'Upserted')", select=["name", "accountnumber"])
    by_number = {r["accountnumber"]: r["name"] for r in upserted}
    check(
        "records.upsert creates and updates by alternate key",
        by_number == {"UPS-0": "Upserted again (SDK)", "UPS-1": "Upserted 1 (SDK)",
                      "UPS-2": "Upserted 2 (SDK)", "UPS-3": "Upserted 3 (SDK)"},
        by_number,
    )

    # Queries with filters, paging (odata.maxpagesize and @odata.nextLink) and ordering.
    found = client.records.list(
        "account",
        filter="startswith(name,'Bulk') and description eq 'updated in bulk'",
        select=["name", "accountnumber"],
        orderby=["accountnumber desc"],
        page_size=3,
    )
    numbers = [r["accountnumber"] for r in found]
    check(
        "records.list filters, orders and follows every page",
        numbers == [f"BULK-{n}" for n in reversed(range(7))],
        numbers,
    )
    pages = list(client.records.list_pages("account", filter="startswith(name,'Bulk')", page_size=3))
    check("records.list_pages yields each page", [len(p) for p in pages] == [3, 3, 1], [len(p) for p in pages])

    # Delete, one and many (one by one).
    client.records.delete("opportunity", opportunity_id)
    check("records.delete removes it", client.records.retrieve("opportunity", opportunity_id) is None)
    client.records.delete("account", account_id)
    client.records.delete("account", ids, use_bulk_delete=False)
    left = client.records.list("account", filter="startswith(name,'Bulk')")
    check("records.delete of many ids removes them all", len(list(left)) == 0, left)

    print("all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - the runner prints the SDK's own error
        traceback.print_exc()
        sys.exit(1)
