"""Domain errors: one class per failure, each with a stable code and reason.

The JSON-RPC layer maps every subclass to an error object in one place
(``chalicelib.rpc.protocol``); ``code`` is the JSON-RPC application error code
and ``reason`` the machine-readable string clients branch on. Codes are
grouped: 1xxx authentication, 2xxx lookup and uniqueness, 3xxx funds,
4xxx state of a provider or account, 5xxx transient.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base class of every refusal the marketplace can explain to a client."""

    code: ClassVar[int] = 4000
    reason: ClassVar[str] = "refused"

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class NotAuthenticated(DomainError):
    """The request carries no valid signature from the account it names."""

    code = 1001
    reason = "not_authenticated"


class ReplayedRequest(DomainError):
    """The request's nonce was already used by this account."""

    code = 1002
    reason = "replayed_request"


class StaleRequest(DomainError):
    """The request's timestamp is outside the accepted window."""

    code = 1003
    reason = "stale_request"


class NotAuthorised(DomainError):
    """The signer is genuine but may not perform this action."""

    code = 1004
    reason = "not_authorised"


class NotFound(DomainError):
    """The account, provider or other record does not exist."""

    code = 2001
    reason = "not_found"


class AlreadyExists(DomainError):
    """A record with this identity already exists."""

    code = 2002
    reason = "already_exists"


class InsufficientBalance(DomainError):
    """The account's available balance does not cover the amount."""

    code = 3001
    reason = "insufficient_balance"


class InsufficientStake(DomainError):
    """The stake would be, or is, below what the action requires."""

    code = 3002
    reason = "insufficient_stake"


class OpenObligations(DomainError):
    """The provider has open purchases or disputes that its stake secures."""

    code = 4001
    reason = "open_obligations"


class InvalidState(DomainError):
    """The action does not apply to the record in its current state."""

    code = 4002
    reason = "invalid_state"


class ReadingRefused(DomainError):
    """A meter reading failed a rule; ``data.rejection`` says which (meter protocol)."""

    code = 4003
    reason = "reading_rejected"


class ConcurrentUpdate(DomainError):
    """Another request changed the same records first; retrying is safe."""

    code = 5001
    reason = "concurrent_update"


class StorageBusy(DomainError):
    """The database refused the request for now (throttled); nothing changed, retry later."""

    code = 5002
    reason = "storage_busy"


class InvalidCursor(DomainError):
    """A pagination cursor that this service did not issue."""

    code = -32602  # it is a bad parameter, whatever layer notices it
    reason = "invalid_cursor"


class PriceAboveLimit(DomainError):
    """The provider's price is above the buyer's max_price_per_kwh."""

    code = 4004
    reason = "price_above_limit"


class InsufficientEnergy(DomainError):
    """The provider has less energy on sale than the purchase asks for."""

    code = 4005
    reason = "insufficient_energy"


class ProviderNotSelling(DomainError):
    """The provider is paused or suspended."""

    code = 4006
    reason = "provider_not_selling"


class PurchaseTooLarge(DomainError):
    """The purchase would take more credits than one atomic write holds."""

    code = 4007
    reason = "purchase_too_large"


class TransactionTooLarge(DomainError):
    """The request would change more records than one atomic write holds."""

    code = 4008
    reason = "transaction_too_large"


# -- disputes (codes 1005-1006, 4009-4014; see chalicelib.domain.disputes) --------


class NotOnPanel(DomainError):
    """The voter was not drawn for this dispute's panel."""

    code = 1005
    reason = "not_on_panel"


class PartyToDispute(DomainError):
    """The account is a party to the dispute (owner, flagger or buyer) and may not judge it."""

    code = 1006
    reason = "party_to_dispute"


class AlreadyVoted(DomainError):
    """This panel member has already voted on the dispute; a vote is final."""

    code = 4009
    reason = "already_voted"


class DisputeClosed(DomainError):
    """The dispute is resolved, or its verdict is already decided by a quorum."""

    code = 4010
    reason = "dispute_closed"


class VotingClosed(DomainError):
    """The dispute's deadline has passed: it awaits resolution and takes no more votes or flags."""

    code = 4011
    reason = "voting_closed"


class PanelUnavailable(DomainError):
    """Too few eligible validators (staked, not a party) to draw a panel that can reach quorum."""

    code = 4012
    reason = "panel_unavailable"


class TooManyDisputes(DomainError):
    """The provider has as many open disputes as its record holds; flag one of them instead."""

    code = 4013
    reason = "too_many_disputes"


class CreditsDisputed(DomainError):
    """The credits are held by an open dispute: they cannot be settled or retired until it resolves."""

    code = 4014
    reason = "credits_disputed"


class InvalidFlag(DomainError):
    """A flag's subject, reason, evidence or bond breaks the documented bounds."""

    code = -32602  # a bad parameter, whatever layer notices it (as InvalidCursor)
    reason = "invalid_flag"
