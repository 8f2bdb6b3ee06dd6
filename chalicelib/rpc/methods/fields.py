"""Field types and base models that every method group's params and results share.

Amount fields take the original client's decimal numbers and convert them
exactly (see chalicelib.domain.units); their JSON schema says what the wire
carries. Through ``model_json_schema`` these are the schemas of the OpenRPC
document.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

from chalicelib.domain import signing, units
from chalicelib.domain.accounts import ACCOUNT_NAME
from chalicelib.domain.ledger import CHAIN_REFERENCE
from chalicelib.domain.providers import JURISDICTION, METER_ADDRESS
from chalicelib.services.auth import NONCE


class Params(BaseModel):
    """Base of every params model: unknown members are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Result(BaseModel):
    model_config = ConfigDict(frozen=True)


# The string form's grammar, as units parses it (an ECMA regex: [0-9] is ASCII).
DECIMAL_STRING_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": f"^{units.DECIMAL_STRING.pattern}$",
    "maxLength": units.MAX_DECIMAL_STRING_LENGTH,
}


def number_schema(description: str, minimum: str | None = None) -> WithJsonSchema:
    """A decimal the wire may carry as a JSON number or as a decimal string."""
    schema: dict[str, Any] = {
        "description": description,
        "oneOf": [{"type": "number"}, DECIMAL_STRING_SCHEMA],
    }
    if minimum is not None:
        schema["x-minimum"] = minimum
    return WithJsonSchema(schema)


# -- amounts --------------------------------------------------------------------

# The original client's names for quantities the code holds in Wh. The wire
# keeps the original names (as field aliases); in the code a name says what
# the number is, so a Wh amount is never called kwh_*.
WIRE_NAMES = {
    "wh": "kwh_amount",
    "counter_wh": "kwh_reading",
    "capacity_wh": "capacity_kwh",
    "min_available_wh": "min_kwh",
}


def wire_name(field_name: str | None, default: str) -> str:
    """The name a client sent a field under: what error messages must say."""
    return WIRE_NAMES.get(field_name or default, field_name or default)


# Decimal kWh -> integer Wh (1 Wh resolution).
KwhAsWh = Annotated[
    int,
    BeforeValidator(lambda v, info: units.wh_from_kwh(v, wire_name(info.field_name, "kwh"))),
    number_schema("Energy in kWh, exact to 1 Wh (at most 3 decimal places)."),
]
# Decimal BLOCK per kWh -> integer micro-BLOCK per kWh.
PricePerKwh = Annotated[
    int,
    BeforeValidator(lambda v, info: units.price_from_block_per_kwh(v, info.field_name or "price")),
    number_schema("Price in BLOCK per kWh, exact to 1 micro-BLOCK (at most 6 decimals)."),
]
# Integer micro-BLOCK (1 BLOCK = 1,000,000 micro-BLOCK).
MicroBlock = Annotated[
    int,
    BeforeValidator(lambda v, info: units.micro_block_exact(v, info.field_name or "amount")),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": units.MAX_MICRO_BLOCK},
                DECIMAL_STRING_SCHEMA,
            ],
            "description": "Amount in micro-BLOCK (1 BLOCK = 1,000,000 micro-BLOCK).",
        }
    ),
]

# The same, where zero makes no sense (a capacity, a price, a transfer).
PositiveKwhAsWh = Annotated[KwhAsWh, Field(gt=0)]
PositivePricePerKwh = Annotated[PricePerKwh, Field(gt=0)]
PositiveMicroBlock = Annotated[MicroBlock, Field(gt=0)]


# -- places -----------------------------------------------------------------------


def _coordinate_schema(limit: int) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "oneOf": [
                {"type": "number", "minimum": -limit, "maximum": limit},
                DECIMAL_STRING_SCHEMA,
            ],
            "description": "Degrees, WGS 84, at most 6 decimal places.",
        }
    )


Latitude = Annotated[
    int,
    BeforeValidator(lambda v, info: units.micro_degrees(v, 90, info.field_name or "latitude")),
    _coordinate_schema(90),
]
Longitude = Annotated[
    int,
    BeforeValidator(lambda v, info: units.micro_degrees(v, 180, info.field_name or "longitude")),
    _coordinate_schema(180),
]


def degrees(micro_deg: int) -> Decimal:
    """Micro-degrees as exact decimal degrees, for results."""
    value = units.block_from_micro(abs(micro_deg))  # the same 10^6 scale as BLOCK
    return -value if micro_deg < 0 else value


Jurisdiction = Annotated[
    StrictStr,
    Field(
        pattern=JURISDICTION.pattern,
        description="ISO 3166-1 alpha-2 country, optionally _subdivision: US_CA",
    ),
]


# -- names and ids ------------------------------------------------------------------

AccountName = Annotated[
    StrictStr,
    Field(pattern=ACCOUNT_NAME.pattern, description="Account name, e.g. alice.theblock"),
]
PublicKeyHex = Annotated[
    StrictStr,
    Field(pattern=r"^(0x)?[0-9a-fA-F]{64}$", description="Ed25519 public key, 32 bytes hex"),
    AfterValidator(signing.normalise_hex),
]
ProviderId = Annotated[StrictStr, Field(pattern=r"^energy-0x[0-9a-f]{16}$")]
MeterAddress = Annotated[
    StrictStr,
    Field(
        pattern=METER_ADDRESS.pattern,
        description="The meter's IoT thing name, MQTT client id and topic level",
    ),
]
ChainReference = Annotated[StrictStr, Field(pattern=CHAIN_REFERENCE.pattern)]
TransactionId = Annotated[StrictStr, Field(pattern=r"^pur-[0-9a-f]{32}$")]


# -- pages ------------------------------------------------------------------------------
# A list request declares `limit: PageLimit = 50` and `cursor: Cursor | None = None`
# as its last fields, and its result ends in `next_cursor: str | None`. They are not a
# base model: pydantic puts inherited fields first, which would move them ahead of the
# fields that say what is listed (and so change by-position params and the document).

Cursor = Annotated[StrictStr, Field(max_length=400, description="From next_cursor")]
PageLimit = Annotated[StrictInt, Field(ge=1, le=100)]


# -- signing ------------------------------------------------------------------------------


class Auth(Params):
    """Who signs the call, and the signature that proves it (docs/api.md)."""

    account: Annotated[StrictStr, Field(max_length=64)]
    nonce: Annotated[StrictStr, Field(pattern=NONCE.pattern)]
    timestamp: Annotated[StrictInt, Field(ge=0, description="Unix seconds")]
    signature: Annotated[
        StrictStr, Field(pattern=r"^(0x)?[0-9a-fA-F]{128}$", description="Ed25519, hex")
    ]


class SignedParams(Params):
    auth: Auth


class NoParams(Params):
    pass
