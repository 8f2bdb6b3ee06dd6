"""Settings, read once from the environment (Lambda configuration or `make run`)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from chalicelib.domain.carbon import DEFAULT_G_CO2_PER_KWH, grid_figures, type_figures
from chalicelib.domain.credits import DEFAULT_CREDIT_LIFETIME_MS
from chalicelib.domain.disputes import DEFAULT_BOND_MICRO_BLOCK
from chalicelib.domain.readings import DEFAULT_MAX_AGE_MS, DEFAULT_MAX_CLOCK_SKEW_MS
from chalicelib.domain.trading import DEFAULT_DISPUTE_WINDOW_MS, MAX_MARKET_FEE_BPS


class Settings(BaseSettings):
    # Bound into every signed request, so a signature made for one deployment
    # (say, a test stage) is worthless on another.
    marketplace_id: str = "energy-marketplace-local"
    # Hex Ed25519 verify key of the operator account; empty means no operator
    # actions (deposits) are possible.
    operator_public_key: str = ""

    registry_table: str = "energy-marketplace-local-registry"
    ledger_table: str = "energy-marketplace-local-ledger"
    credits_table: str = "energy-marketplace-local-credits"
    receipts_table: str = "energy-marketplace-local-receipts"
    disputes_table: str = "energy-marketplace-local-disputes"
    analytics_table: str = "energy-marketplace-local-analytics"
    connections_table: str = "energy-marketplace-local-connections"
    # Where the app pushes to WebSocket clients: the WebSocket API's
    # @connections endpoint (https://<api id>.execute-api.<region>.amazonaws.com/<stage>
    # in AWS; the local gateway's offline). Empty: no live events are pushed.
    websocket_management_endpoint: str = ""

    # A signed request is accepted this many seconds either side of our clock.
    auth_window_seconds: int = Field(default=300, ge=30, le=3600)
    # Meter readings (docs/meter-protocol.md): how far ahead of our clock a
    # reading may be, how old it may be, and how long its credit stays on sale.
    max_clock_skew_ms: int = Field(default=DEFAULT_MAX_CLOCK_SKEW_MS, ge=0, le=3_600_000)
    max_reading_age_ms: int = Field(default=DEFAULT_MAX_AGE_MS, ge=60_000, le=7 * 86_400_000)
    credit_lifetime_ms: int = Field(default=DEFAULT_CREDIT_LIFETIME_MS, ge=3_600_000)
    # Trading: a purchase settles this long after its newest credit was minted.
    dispute_window_ms: int = Field(default=DEFAULT_DISPUTE_WINDOW_MS, ge=0)
    # The treasury's share of each settled purchase, in basis points (1/100 %).
    market_fee_bps: int = Field(default=0, ge=0, le=MAX_MARKET_FEE_BPS)
    # The key that signs settlement receipts: the hex Ed25519 seed itself
    # (local runs and tests), or the name of an SSM SecureString holding it
    # (deployments; read once per container, on first use).
    receipt_signing_key: SecretStr = SecretStr("")
    receipt_signing_key_parameter: str = ""
    # The receipt key's hex verify key, as published (energy.getMarketInfo). Set
    # by the deploy, so that publishing it never reads the private key (a
    # function that does not sign may not read it); a signer checks that its key
    # matches. Empty: derived from an inline RECEIPT_SIGNING_KEY, if any.
    receipt_public_key: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    # What an account's flag on a reading posts from its balance, micro-BLOCK.
    dispute_bond_micro_block: int = Field(default=DEFAULT_BOND_MICRO_BLOCK, gt=0)
    # Carbon (docs/carbon.md). Grams of CO2 avoided per kWh by energy type
    # where a credit's jurisdiction has no published grid figure (the original
    # description's factors; battery energy avoids none whatever this says).
    carbon_g_co2_per_kwh: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_G_CO2_PER_KWH)
    )
    # Analytics (docs/analytics.md): the time buckets of trades and meter
    # activity (an hour; a local market that runs fast uses minutes), and the
    # slots of "reporting on time" (a meter reads every 15 minutes).
    analytics_bucket_ms: int = Field(default=3_600_000, ge=60_000, le=3_600_000)
    analytics_slot_ms: int = Field(default=900_000, ge=60_000, le=900_000)

    @field_validator("analytics_bucket_ms", "analytics_slot_ms")
    @classmethod
    def _divides_an_hour(cls, value: int) -> int:
        # Buckets line up with hours and days, and with each other.
        if value % 60_000 or 3_600_000 % value:
            raise ValueError("must be whole minutes that divide an hour")
        return value

    # The operator's own figures over the published ones of
    # chalicelib/domain/data/carbon_factors.json: grid intensity in g CO2e per
    # kWh generated, by jurisdiction (a subdivision's own, say {"US_CA": 200}),
    # and the technologies' life-cycle emissions by energy type.
    carbon_grid_g_co2_per_kwh: dict[str, int] = Field(default_factory=dict)
    carbon_life_cycle_g_co2_per_kwh: dict[str, int] = Field(default_factory=dict)

    @field_validator("carbon_g_co2_per_kwh", "carbon_life_cycle_g_co2_per_kwh")
    @classmethod
    def _by_energy_type(cls, grams: dict[str, int]) -> dict[str, int]:
        type_figures(grams, "carbon factor")
        return grams

    @field_validator("carbon_grid_g_co2_per_kwh")
    @classmethod
    def _by_jurisdiction(cls, grams: dict[str, int]) -> dict[str, int]:
        grid_figures(grams)
        return grams


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
