"""Use cases of the provider registry: register, update, stake, look up, list."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain import signing
from chalicelib.domain.accounts import Role
from chalicelib.domain.errors import (
    InsufficientStake,
    InvalidState,
    NotFound,
    OpenObligations,
)
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.providers import (
    MIN_STAKE_MICRO_BLOCK,
    EnergyType,
    Location,
    Provider,
    ProviderQuery,
    provider_id_for,
)
from chalicelib.services.accounts import commit_spending
from chalicelib.services.auth import SignedCall, authenticate, require_signer
from chalicelib.services.dependencies import Dependencies, retry_on_conflict
from chalicelib.services.ports import Page, UnitOfWork


@dataclass(frozen=True)
class Registration:
    owner: str
    display_name: str
    energy_type: EnergyType
    jurisdiction: str
    location: Location
    capacity_wh: int
    price_micro_block_per_kwh: int
    stake_micro_block: int
    meter_address: str
    meter_public_key: str


@dataclass(frozen=True)
class ProviderUpdate:
    display_name: str | None = None
    capacity_wh: int | None = None
    price_micro_block_per_kwh: int | None = None
    paused: bool | None = None
    meter_public_key: str | None = None


def register_provider(deps: Dependencies, call: SignedCall, registration: Registration) -> Provider:
    """Register a provider; its stake moves from the owner's balance atomically."""
    return retry_on_conflict(lambda: _register(deps, call, registration))


def _register(deps: Dependencies, call: SignedCall, registration: Registration) -> Provider:
    uow = deps.unit_of_work()
    signer = authenticate(deps, uow, call)
    require_signer(signer, registration.owner, "register a provider for this owner")
    if registration.stake_micro_block < MIN_STAKE_MICRO_BLOCK:
        raise InsufficientStake(
            "the stake is below the minimum",
            minimum_micro_block=MIN_STAKE_MICRO_BLOCK,
            offered_micro_block=registration.stake_micro_block,
        )
    now = deps.clock()
    provider = Provider(
        provider_id=provider_id_for(registration.owner, registration.meter_address),
        owner=registration.owner,
        display_name=registration.display_name,
        energy_type=registration.energy_type,
        jurisdiction=registration.jurisdiction,
        location=registration.location,
        capacity_wh=registration.capacity_wh,
        price_micro_block_per_kwh=registration.price_micro_block_per_kwh,
        stake_micro_block=registration.stake_micro_block,
        meter_address=registration.meter_address,
        meter_public_key=signing.normalise_hex(registration.meter_public_key),
        created_at=now,
        updated_at=now,
    )
    uow.providers.add(provider)
    _move_balance_to_stake(uow, call, provider, registration.stake_micro_block, now)
    owner = uow.accounts.get(registration.owner)
    if owner is not None and Role.PROVIDER not in owner.roles:
        uow.accounts.add_role(owner.name, Role.PROVIDER)
    commit_spending(deps, uow, registration.owner, registration.stake_micro_block)
    return provider


def update_provider(
    deps: Dependencies, call: SignedCall, provider_id: str, update: ProviderUpdate
) -> Provider:
    """Change price, capacity, name, pause state or the meter's key (owner only)."""

    def attempt() -> Provider:
        uow, current = _owned_provider(deps, call, provider_id, "update this provider")
        changed = current.updated(
            now=deps.clock(),
            display_name=update.display_name,
            capacity_wh=update.capacity_wh,
            price_micro_block_per_kwh=update.price_micro_block_per_kwh,
            paused=update.paused,
            meter_public_key=update.meter_public_key,
        )
        uow.providers.save(changed, expected_version=current.version)
        if update.meter_public_key is not None:
            uow.meters.rotate_key(current.meter_address, changed.meter_public_key)
        uow.commit()
        return changed

    return retry_on_conflict(attempt)


def top_up_stake(
    deps: Dependencies, call: SignedCall, provider_id: str, micro_block: int
) -> Provider:
    """Add to a provider's stake from the owner's balance (a suspended provider
    whose stake reaches the minimum again is active again)."""
    if micro_block <= 0:
        raise InvalidState("a stake top-up must be positive")

    def attempt() -> Provider:
        uow, current = _owned_provider(deps, call, provider_id, "stake for this provider")
        now = deps.clock()
        changed = current.restaked(micro_block, now=now)
        uow.providers.save(changed, expected_version=current.version)
        _move_balance_to_stake(uow, call, changed, micro_block, now)
        commit_spending(deps, uow, current.owner, micro_block)
        return changed

    return retry_on_conflict(attempt)


def withdraw_stake(
    deps: Dependencies, call: SignedCall, provider_id: str, micro_block: int
) -> Provider:
    """Return stake to the owner's balance.

    Refused while the provider has open obligations (purchases awaiting
    settlement, disputes): the stake is what secures them. A withdrawal that
    leaves less than the minimum suspends the provider until it stakes again.
    """
    if micro_block <= 0:
        raise InvalidState("a stake withdrawal must be positive")

    def attempt() -> Provider:
        uow, current = _owned_provider(deps, call, provider_id, "withdraw this provider's stake")
        if current.open_obligations > 0:
            raise OpenObligations(
                "the provider has open purchases or disputes",
                open_obligations=current.open_obligations,
            )
        if micro_block > current.stake_micro_block:
            raise InsufficientStake(
                "the stake is smaller than the withdrawal",
                stake_micro_block=current.stake_micro_block,
                requested_micro_block=micro_block,
            )
        now = deps.clock()
        changed = current.restaked(-micro_block, now=now)
        # The version condition also guards the obligations check above:
        # every write that opens an obligation bumps the version.
        uow.providers.save(changed, expected_version=current.version)
        uow.ledger.credit(current.owner, micro_block)
        uow.ledger.record(
            LedgerEntry(
                f"{provider_id}/{call.nonce}",
                EntryKind.UNSTAKE,
                current.owner,
                micro_block,
                provider_id,
                now,
            )
        )
        uow.commit()
        return changed

    return retry_on_conflict(attempt)


def get_provider(deps: Dependencies, provider_id: str) -> Provider:
    return _existing(deps.unit_of_work(), provider_id)


def list_providers(
    deps: Dependencies, query: ProviderQuery, limit: int, cursor: str | None
) -> Page[Provider]:
    return deps.unit_of_work().providers.query(query, limit, cursor)


def _existing(uow: UnitOfWork, provider_id: str) -> Provider:
    provider = uow.providers.get(provider_id)
    if provider is None:
        raise NotFound("no such provider", provider_id=provider_id)
    return provider


def _owned_provider(
    deps: Dependencies, call: SignedCall, provider_id: str, action: str
) -> tuple[UnitOfWork, Provider]:
    """A unit of work and the provider read in it, once ``call`` is shown to
    be signed by the provider's owner (``action`` names what is refused if not)."""
    uow = deps.unit_of_work()
    signer = authenticate(deps, uow, call)
    current = _existing(uow, provider_id)
    require_signer(signer, current.owner, action)
    return uow, current


def _move_balance_to_stake(
    uow: UnitOfWork, call: SignedCall, provider: Provider, micro_block: int, now: int
) -> None:
    uow.ledger.debit(provider.owner, micro_block)
    uow.ledger.record(
        LedgerEntry(
            f"{provider.provider_id}/{call.nonce}",
            EntryKind.STAKE,
            provider.owner,
            micro_block,
            provider.provider_id,
            now,
        )
    )
