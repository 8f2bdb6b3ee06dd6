"""Accounts (name, key, roles) and the request nonces they have used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    Tables,
    account_key,
    nonce_key,
)
from chalicelib.domain.accounts import Account, Role
from chalicelib.domain.errors import (
    AlreadyExists,
    NotFound,
    ReplayedRequest,
)
from chalicelib.services.ports import UsedNonce

if TYPE_CHECKING:
    from chalicelib.adapters.dynamodb.unit_of_work import Staged


def account_to_item(account: Account) -> Item:
    return to_item(
        {
            "pk": f"ACCOUNT#{account.name}",
            "sk": "ACCOUNT",
            "name": account.name,
            "public_key": account.public_key,
            "roles": {str(r) for r in account.roles},  # a string set
            "created_at": account.created_at,
        }
    )


def account_from_item(item: Item) -> Account:
    values = from_item(item)
    return Account(
        name=values["name"],
        public_key=values["public_key"],
        roles=frozenset(Role(r) for r in values["roles"]),
        created_at=as_int(values["created_at"]),
    )


class DynamoAccounts:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged
        # Identity map: authentication and the use case both look up the
        # signer; one unit of work reads each account once.
        self._read: dict[str, Account | None] = {}

    def get(self, name: str, *, consistent: bool = False) -> Account | None:
        if consistent or name not in self._read:
            found = self._client.get_item(
                TableName=self._tables.registry,
                Key=account_key(name),
                ConsistentRead=consistent,
                ReturnConsumedCapacity="TOTAL",
            )
            self._read[name] = account_from_item(found["Item"]) if "Item" in found else None
        return self._read[name]

    def add(self, account: Account) -> None:
        self._staged.put(
            self._tables.registry,
            account_to_item(account),
            "attribute_not_exists(pk)",
            lambda: AlreadyExists("account already exists", account=account.name),
        )

    def add_role(self, name: str, role: Role) -> None:
        self._change_roles(name, "ADD", role)

    def remove_role(self, name: str, role: Role) -> None:
        self._change_roles(name, "DELETE", role)

    def _change_roles(self, name: str, action: str, role: Role) -> None:
        # Roles are a string set: ADD and DELETE commute, so two role changes
        # at once both take effect instead of the later overwriting the earlier.
        self._staged.update(
            self._tables.registry,
            account_key(name),
            f"{action} #roles :role",
            "attribute_exists(pk)",
            lambda: NotFound("no such account", account=name),
            ExpressionAttributeNames={"#roles": "roles"},
            ExpressionAttributeValues=to_item({":role": {str(role)}}),
        )


class DynamoNonces:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def seen(self, account: str, nonce: str) -> bool:
        found = self._client.get_item(
            TableName=self._tables.registry,
            Key=nonce_key(account, nonce),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return "Item" in found

    def used(self, account: str, nonce: str) -> UsedNonce | None:
        found = self._client.get_item(
            TableName=self._tables.registry,
            Key=nonce_key(account, nonce),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        if "Item" not in found:
            return None
        values = from_item(found["Item"])
        # A record written before answers were kept has neither: never a match.
        return UsedNonce(values.get("request_hash", ""), values.get("answer"))

    def consume(self, account: str, nonce: str, expires_at: int, request_hash: str) -> None:
        item = {
            **nonce_key(account, nonce),
            **to_item({"expires_at": expires_at, "request_hash": request_hash}),
        }
        self._staged.put(
            self._tables.registry,
            item,
            "attribute_not_exists(pk)",
            lambda: ReplayedRequest("this request was already received", nonce=nonce),
        )

    def keep_answer(self, account: str, nonce: str, request_hash: str, answer: str) -> None:
        self._staged.update(
            self._tables.registry,
            nonce_key(account, nonce),
            "SET #answer = :answer",
            "attribute_exists(pk) AND request_hash = :hash AND attribute_not_exists(#answer)",
            lambda: ReplayedRequest("this request was already answered", nonce=nonce),
            ExpressionAttributeNames={"#answer": "answer"},
            ExpressionAttributeValues=to_item({":answer": answer, ":hash": request_hash}),
        )
