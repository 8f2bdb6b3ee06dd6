"""Accounts: who can act in the marketplace, and with which key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final

ACCOUNT_NAME: Final = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{1,62})[a-z0-9]$")

# The marketplace's own account. Its key is not stored: it comes from
# configuration, so rotating it is a deployment, not a database write.
OPERATOR: Final = "operator"


class Role(StrEnum):
    OPERATOR = "operator"
    BUYER = "buyer"
    PROVIDER = "provider"
    VALIDATOR = "validator"


# Roles the operator grants; the others follow from what an account does
# (every account can buy; registering a provider makes it a provider).
GRANTED_ROLES: Final = frozenset({Role.VALIDATOR})


@dataclass(frozen=True)
class Account:
    name: str
    public_key: str  # 64 lower-case hex characters: the Ed25519 verify key
    roles: frozenset[Role] = field(default_factory=lambda: frozenset({Role.BUYER}))
    created_at: int = 0

    def with_roles(self, roles: frozenset[Role]) -> Account:
        return replace(self, roles=roles)


def is_valid_account_name(name: str) -> bool:
    return bool(ACCOUNT_NAME.match(name)) and ".." not in name
