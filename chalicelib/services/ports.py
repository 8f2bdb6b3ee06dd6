"""What the use cases need from persistence, as interfaces.

Reads return current state. Writes are *staged* on a unit of work and applied
all-or-nothing by ``commit()``: each staged write carries the condition it
needs (a balance that covers a debit, a record that must not exist yet, the
version that was read) and the domain error to raise when the condition
fails. The DynamoDB adapter turns a commit into one TransactWriteItems call;
the in-memory adapter applies the same conditions under a lock. One contract
test suite runs against both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from chalicelib.domain.accounts import Account, Role
from chalicelib.domain.analytics import Aggregate, AggregateKey, Mark
from chalicelib.domain.carbon import Bought
from chalicelib.domain.credits import Credit, Freeze, Retirement
from chalicelib.domain.disputes import Dispute, DisputeRole, DisputeStatus, Validator
from chalicelib.domain.events import Connection
from chalicelib.domain.fraud import DayCurve, PeerHistogram, WatchState
from chalicelib.domain.ledger import LedgerEntry
from chalicelib.domain.providers import Provider, ProviderQuery, ReadingWindow
from chalicelib.domain.readings import MeterOwner, MeterState, RejectionRecord
from chalicelib.domain.receipts import ChainHead, Receipt, SlashReceipt
from chalicelib.domain.trading import Purchase

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    # Opaque to clients: the sort key of the last item returned.
    next_cursor: str | None


@dataclass
class JobRun:
    """What one run of a scheduled job did, for its log line and the benchmarks.

    The storage adapter fills in what it read (``hours_read``: index
    partitions of due work, by the hour it falls due in; ``queries``,
    ``items_read``) and where the job's progress now stands; the job counts
    what it did.
    """

    job: str
    hours_read: int = 0
    queries: int = 0
    items_read: int = 0
    done: int = 0  # purchases settled, credits expired
    failed: int = 0  # left for the next run
    wh: int = 0
    watermark: int | None = None  # unix ms: the job has left no work due before it

    def as_log(self) -> dict[str, object]:
        return dict(vars(self))


# Handles a batch of due work; True when it dealt with all of it (what it did
# not deal with stays due, and is read again by the next run).
DueHandler = Callable[[Sequence[T]], bool]


class AccountRepository(Protocol):
    def get(self, name: str, *, consistent: bool = False) -> Account | None:
        """The account; ``consistent``: strongly consistent (an answer after a write)."""

    def add(self, account: Account) -> None:
        """Stage: create the account. Fails with AlreadyExists."""

    def add_role(self, name: str, role: Role) -> None:
        """Stage: add a role to an existing account (a set union, so concurrent
        role changes never overwrite each other)."""

    def remove_role(self, name: str, role: Role) -> None:
        """Stage: remove a role from an existing account."""


@dataclass(frozen=True)
class UsedNonce:
    """What a used nonce remembers: which request used it, and its first answer."""

    request_hash: str  # SHA-256 of the method and the signed params
    answer: str | None  # the JSON result first sent; None until it is kept


class NonceRepository(Protocol):
    def seen(self, account: str, nonce: str) -> bool:
        """Whether ``account`` already used ``nonce`` (strongly consistent)."""

    def used(self, account: str, nonce: str) -> UsedNonce | None:
        """The request that used ``nonce``, and its answer (strongly consistent)."""

    def consume(self, account: str, nonce: str, expires_at: int, request_hash: str) -> None:
        """Stage: record that ``account`` used ``nonce`` for the request with this
        hash. Fails with ReplayedRequest."""

    def keep_answer(self, account: str, nonce: str, request_hash: str, answer: str) -> None:
        """Stage: attach the first answer to the nonce this request used. Fails with
        ReplayedRequest when the nonce is not this request's or has an answer."""


class LedgerRepository(Protocol):
    def balance(self, account: str) -> int:
        """The available balance, always strongly consistent: it is money, and it is
        read to answer a call that just changed it."""

    def treasury(self) -> int: ...

    def entries(self, account: str, limit: int, cursor: str | None) -> Page[LedgerEntry]: ...

    def open_account(self, account: str) -> None:
        """Stage: a zero balance for a new account."""

    def credit(self, account: str, micro_block: int) -> None:
        """Stage: add to a balance that must exist (NotFound otherwise)."""

    def debit(self, account: str, micro_block: int, *, bought_at_ms: int | None = None) -> None:
        """Stage: subtract; fails with InsufficientBalance if it does not cover it.

        ``bought_at_ms``: the debit pays for a purchase made then.
        """

    def record(self, entry: LedgerEntry) -> None:
        """Stage: write the entry. Fails with AlreadyExists for a second entry of
        the same kind and id (a deposit of one chain transaction credits once)."""

    def credit_treasury(self, shard: int, micro_block: int) -> None:
        """Stage: add to one shard of the treasury (created on first use)."""

    def bought(self, account: str) -> Bought:
        """Wh an account has bought (settled), by energy type and by origin."""

    def record_bought(
        self,
        account: str,
        energy_type: str,
        jurisdiction: str,
        wh: int,
        *,
        at_ms: int | None = None,
    ) -> None:
        """Stage: add settled Wh (negative: revoked) to what ``account`` has
        bought of ``energy_type``, and of it from ``jurisdiction``, in one write;
        ``at_ms`` dates the change (the analytics bucket it by that time)."""


class ProviderRepository(Protocol):
    def get(self, provider_id: str) -> Provider | None: ...

    def owned_by(self, owner: str, *, consistent: bool = False) -> Sequence[Provider]:
        """The owner's providers. Which ones comes from the owner index (eventually
        consistent; it changes only when a provider is registered); ``consistent``
        reads the providers themselves, and so their stakes, strongly consistent."""

    def query(self, query: ProviderQuery, limit: int, cursor: str | None) -> Page[Provider]:
        """Providers ordered by price then id, from keys and indexes only."""

    def add(self, provider: Provider) -> None:
        """Stage: create the provider and claim its meter address. Fails with
        AlreadyExists when either is taken."""

    def save(self, provider: Provider, expected_version: int) -> None:
        """Stage: write the provider's profile and stake if it still has
        ``expected_version``; fails with ConcurrentUpdate otherwise. Counters
        kept by ingestion (available Wh, reading slots) are not touched."""

    def reserve_energy(self, provider: Provider, wh: int) -> None:
        """Stage: take ``wh`` off the provider's available energy and open an
        obligation, if it still sells at the price read, has the energy and
        its disputes' freezes are as read; fails with ConcurrentUpdate otherwise."""

    def settle_obligation(
        self, provider: Provider, earned_micro_block: int, wh: int, *, at_ms: int | None = None
    ) -> None:
        """Stage: close one open obligation and count a settled sale (made at
        ``at_ms``); fails with ConcurrentUpdate if the provider has no open
        obligation or its disputes' freezes changed since ``provider`` was read."""

    def take_off_market(self, provider_id: str, wh: int) -> None:
        """Stage: take Wh that expired unsold off the provider's available energy."""

    def revoke_energy(
        self,
        provider_id: str,
        available_wh: int,
        closed_obligations: int,
        *,
        sold_wh: int = 0,
        at_ms: int | None = None,
    ) -> None:
        """Stage: take revoked Wh that was on sale off the available energy,
        close the obligations of purchases revoked whole, and take revoked Wh
        that was sold and settled off what the provider sold (dated ``at_ms``)."""

    def hold_for_dispute(self, provider: Provider, freeze: Freeze) -> None:
        """Stage: add a dispute's freeze and open an obligation (the stake secures
        the dispute), if the freezes are as read; ConcurrentUpdate otherwise."""

    def release_dispute(self, provider: Provider, dispute_id: str, *, upheld: bool) -> None:
        """Stage: drop a dispute's freeze, close its obligation and count it if
        upheld, if the freezes are as read; ConcurrentUpdate otherwise."""

    def slash(self, provider: Provider, micro_block: int) -> None:
        """Stage: take ``micro_block`` from the stake (the status follows it), if
        the stake is as read; ConcurrentUpdate otherwise."""


class MeterRepository(Protocol):
    def get(self, meter_address: str) -> MeterState | None: ...

    def get_with_provider(
        self, meter_address: str, provider_id: str
    ) -> tuple[MeterState | None, MeterOwner | None]:
        """The meter and what ingest needs of the provider a reading names, in one
        read; no provider when it is not the meter's."""

    def advance(self, before: MeterState, credit: Credit, *, reading_window: ReadingWindow) -> None:
        """Stage, as one write: the reading ``credit`` was minted from becomes the
        meter's last, with the credit itself (all that is needed to write it
        again), if the meter's last reading is still ``before``'s
        (ConcurrentUpdate otherwise); the credit's Wh are added to its provider's
        available energy, and its recent reading slots (uptime) kept."""

    def rotate_key(self, meter_address: str, public_key: str) -> None:
        """Stage: register a new Ed25519 key for the meter."""

    def record_rejection(self, record: RejectionRecord, meter_known: bool) -> None:
        """Stage: keep the refused reading and count it on the meter. Fails with
        AlreadyExists when this very delivery was already recorded."""

    def rejections(
        self, meter_address: str, limit: int, cursor: str | None
    ) -> Page[RejectionRecord]:
        """A meter's refused readings, newest first."""


class CreditRepository(Protocol):
    def get(self, credit_id: str) -> Credit | None: ...

    def mint(self, credit: Credit) -> None:
        """Stage: create the credit; fails with AlreadyExists if it was minted."""

    def written(self, credit_ids: Sequence[str]) -> set[str]:
        """Which of these credits have their own record. An eventually consistent
        read: a credit written a moment ago may be missing from the answer."""

    def by_provider(self, provider_id: str, limit: int, cursor: str | None) -> Page[Credit]:
        """A provider's credits (baselines excluded), newest first."""

    def available(self, provider_id: str, limit: int) -> Sequence[Credit]:
        """Up to ``limit`` of a provider's credits on sale, oldest first."""

    def in_window(
        self, provider_id: str, from_ms: int, to_ms: int, limit: int, cursor: str | None
    ) -> Page[Credit]:
        """A provider's credits whose interval ends in ``[from_ms, to_ms)``, in that
        order (by interval end, then id), baselines excluded; one index range."""

    def revoke(self, credit: Credit) -> None:
        """Stage: the credit leaves for good (its reading was found fraudulent),
        off every listing. Fails with ConcurrentUpdate unless it is still in the
        state it was read in."""

    def reserve(self, credit: Credit, purchase_id: str) -> None:
        """Stage: take the whole credit off sale for a purchase. Fails with
        ConcurrentUpdate unless it is still on sale with the Wh that was read."""

    def split(self, credit: Credit, take_wh: int, purchase_id: str) -> Credit:
        """Stage: keep ``credit.wh - take_wh`` on sale and reserve a new credit of
        ``take_wh`` for the purchase; return the new credit. Fails with
        ConcurrentUpdate unless the credit is still on sale with the Wh read."""

    def get_many(self, credit_ids: Sequence[str]) -> Sequence[Credit]:
        """The credits that exist among ``credit_ids``, in that order."""

    def hold(self, credit_id: str, purchase_id: str, buyer: str) -> None:
        """Stage: a reserved credit becomes ``buyer``'s holding. Fails with
        ConcurrentUpdate unless it is still reserved for ``purchase_id``."""

    def holdings(self, holder: str, limit: int, cursor: str | None) -> Page[Credit]:
        """Credits ``holder`` holds (settled, not retired), newest first."""

    def each_expired(
        self, run: JobRun, now_ms: int, budget: int, expire: DueHandler[Credit]
    ) -> None:
        """Hand the credits still on sale whose expiry has come by ``now_ms`` to
        ``expire``, a batch at a time, from where the job ``run.job`` left off,
        until none are left or ``run.done`` reaches ``budget``; then record how
        far the job got (committed on its own). ``run`` gets what was read."""

    def expire(self, credit: Credit) -> None:
        """Stage: take the credit out of the market. Fails with ConcurrentUpdate
        unless it is still on sale with the Wh that was read."""

    def retire(self, credit: Credit, retirement: Retirement) -> None:
        """Stage: retire a held credit for good. Fails with ConcurrentUpdate
        unless it is still held by the retiring account."""


class PurchaseRepository(Protocol):
    def get(self, purchase_id: str) -> Purchase | None: ...

    def add(self, purchase: Purchase) -> None:
        """Stage: record the purchase and its escrow. Fails with AlreadyExists."""

    def settle(self, settled: Purchase) -> None:
        """Stage: mark an open purchase settled (with its receipt). Fails with
        ConcurrentUpdate unless it is still open."""

    def each_due(self, run: JobRun, now_ms: int, budget: int, settle: DueHandler[Purchase]) -> None:
        """Hand the open purchases whose settlement time has come by ``now_ms``
        to ``settle``, a batch at a time, earliest first, from where the job
        ``run.job`` left off, until none are left or ``run.done`` reaches
        ``budget``; then record how far the job got (committed on its own).
        ``run`` gets what was read."""

    def by_buyer(
        self, buyer: str, *, open_only: bool, limit: int, cursor: str | None
    ) -> Page[Purchase]:
        """A buyer's open purchases (oldest first) or closed ones (newest first)."""

    def revise(self, before: Purchase, after: Purchase) -> None:
        """Stage: an open purchase loses revoked credits (and their share of the
        escrow), or is revoked whole. Fails with ConcurrentUpdate unless it is
        still open with the Wh of ``before``."""


class ReceiptRepository(Protocol):
    def head(self, chain: str) -> ChainHead | None:
        """The newest receipt of a chain (strongly consistent)."""

    def get(self, chain: str, sequence: int) -> Receipt | None: ...

    def append(self, receipt: Receipt) -> None:
        """Stage: add the receipt and move the chain head to it, if the head is
        still the receipt before it; fails with ConcurrentUpdate otherwise."""

    def by_chain(self, chain: str, limit: int, cursor: str | None) -> Page[Receipt]:
        """A chain's receipts, oldest first (the order a verifier needs)."""

    def by_buyer(self, buyer: str, limit: int, cursor: str | None) -> Page[Receipt]:
        """Receipts of a buyer's settlements, newest first."""

    def append_slash(self, receipt: SlashReceipt) -> None:
        """Stage: add a slash receipt to its chain (as ``append``)."""

    def slash_receipt(self, chain: str, sequence: int) -> SlashReceipt | None: ...

    def slash_receipts(self, chain: str, limit: int, cursor: str | None) -> Page[SlashReceipt]:
        """A slash chain's receipts, oldest first."""


class JobRepository(Protocol):
    def caught_up_to(self, job: str) -> int | None:
        """The time (unix ms) before which the job has left no due work, if it ran."""

    def advance(self, job: str, to_ms: int) -> None:
        """Stage: record that the job has left no work due before ``to_ms``
        (never back; the adapter may round it down to its own granularity).
        Fails with ConcurrentUpdate unless it moves forward."""


class DisputeRepository(Protocol):
    def get(self, dispute_id: str) -> Dispute | None:
        """The dispute (strongly consistent: a flag decides to open or join on it)."""

    def open(self, dispute: Dispute) -> None:
        """Stage: create the dispute (and list it for its flagger and its panel).
        Fails with ConcurrentUpdate when it exists (a concurrent flag opened it:
        reading again joins it)."""

    def join(self, joined: Dispute, expected_version: int, flagger: str | None) -> None:
        """Stage: ``save`` the dispute with its new flag, and list it for the new
        flagging account (None: a detector)."""

    def save(self, changed: Dispute, expected_version: int) -> None:
        """Stage: store the dispute (a flag joined, a vote, a verdict, a page of
        its revocation) if it is still at ``expected_version``; fails with
        ConcurrentUpdate otherwise. It stays on the due index while open or
        revoking."""

    def each_due(self, run: JobRun, now_ms: int, budget: int, handle: DueHandler[Dispute]) -> None:
        """Hand the disputes with work due by ``now_ms`` (open past their
        deadline, or guilty and still revoking) to ``handle``, as ``each_due``
        of purchases does."""

    def by_provider(self, provider_id: str, limit: int, cursor: str | None) -> Page[Dispute]:
        """Disputes against a provider, newest first."""

    def by_status(self, status: DisputeStatus, limit: int, cursor: str | None) -> Page[Dispute]:
        """Disputes with ``status``, newest first."""

    def count_with_status(self, status: DisputeStatus) -> int:
        """How many disputes have ``status`` (the index's entries, counted)."""

    def by_member(
        self, role: DisputeRole, name: str, limit: int, cursor: str | None
    ) -> Page[Dispute]:
        """Disputes ``name`` flagged (``flagger``) or was drawn to judge (``panel``),
        newest first."""


class ValidatorRepository(Protocol):
    def all(self) -> Sequence[Validator]:
        """Every validator record, with the role or not (the panel draw's candidates)."""

    def get(self, name: str) -> Validator | None: ...

    def add(self, name: str) -> None:
        """Stage: ``name`` holds the validator role (its stake, if any, is kept)."""

    def remove(self, name: str) -> None:
        """Stage: ``name`` no longer holds the role; its record stays while it has stake."""

    def change_stake(self, validator: Validator, micro_block: int) -> None:
        """Stage: add ``micro_block`` (negative: withdraw) to the validator stake, if
        the stake and the open panels are as read; ConcurrentUpdate otherwise."""

    def seat(self, names: Sequence[str], panels: int) -> None:
        """Stage: count ``panels`` (+1 drawn, -1 decided) open panels for each name."""


class WatchRepository(Protocol):
    """What the fraud detectors keep: a state per meter, peer cells, the replay index."""

    def state(self, meter_address: str) -> tuple[WatchState, int]:
        """The meter's watch state and its version (an empty state at version 0)."""

    def save_state(self, meter_address: str, state: WatchState, expected_version: int) -> None:
        """Stage: store the state if it is still at ``expected_version``."""

    def peers(self, key: str) -> PeerHistogram | None:
        """A peer cell's histogram for one hour (``fraud.peer_key``), if any meter added to it."""

    def add_to_peers(self, key: str, capacity_factor_bps: int) -> None:
        """Stage: count one meter's capacity factor in a peer cell's hour (commutes)."""

    def curves(self, key: str) -> tuple[tuple[DayCurve, ...], int]:
        """The replay index entry under ``key`` and its version (empty at version 0)."""

    def save_curves(self, key: str, curves: Sequence[DayCurve], expected_version: int) -> None:
        """Stage: store the replay index entry if it is still at ``expected_version``."""


class AnalyticsRepository(Protocol):
    """The market's aggregates (``chalicelib.domain.analytics``)."""

    def get_many(self, keys: Sequence[AggregateKey]) -> dict[AggregateKey, Aggregate]:
        """The stored aggregates among ``keys``, read strongly consistent."""

    def get(self, key: AggregateKey) -> Aggregate | None:
        """One aggregate, if stored (eventually consistent: a figure's read)."""

    def save(self, aggregate: Aggregate, now_ms: int) -> None:
        """Stage: store the aggregate if it is still at the version it was read at
        (ConcurrentUpdate otherwise); a seller is indexed as of ``now_ms``."""

    def add_counters(
        self,
        key: AggregateKey,
        shard: str,
        counters: Mapping[str, int],
        first: str,
        last: str,
        seen: Mark | None,
        now_ms: int,
    ) -> Aggregate:
        """Add a shard's sums and move its mark to ``last``: a write of its own,
        not staged. Only if the shard's mark is below ``first`` (``seen`` None)
        or is still ``seen``; ConcurrentUpdate otherwise. The aggregate as written."""

    def forget_marks(self, aggregate: Aggregate, shards: Sequence[str]) -> None:
        """Remove those shards' marks, if still as in ``aggregate`` (a write of its own)."""

    def members(self, pk: str, first_sk: str, last_sk: str) -> list[Aggregate]:
        """A family's members in a key range, in key order: one Query."""

    def leaders(self, window: str, now_ms: int) -> list[Iterator[tuple[int, Aggregate]]]:
        """The leaderboard index: candidate sellers of a window, each stream in
        descending order of a bound on what they sold in it."""


class ConnectionRepository(Protocol):
    """Live WebSocket connections and what each subscribed to."""

    def open(self, connection: Connection) -> None:
        """Stage: record a new connection (AlreadyExists if its id is taken)."""

    def get(self, connection_id: str) -> Connection | None: ...

    def topics(self, connection_id: str) -> list[str]:
        """The topics the connection is subscribed to."""

    def subscribe(self, connection: Connection, topic: str) -> None:
        """Stage: subscribe the connection to a topic (again is the same)."""

    def unsubscribe(self, connection_id: str, topic: str) -> None:
        """Stage: end a subscription (none is fine)."""

    def close(self, connection_id: str) -> int:
        """Forget the connection and its subscriptions now (not staged)."""

    def subscribers(self, topics: Sequence[str]) -> dict[str, list[str]]:
        """The connections subscribed to each of ``topics``."""

    def subscribed_any(self, topics: Sequence[str]) -> bool:
        """Whether any connection is subscribed to one of ``topics``."""


class UnitOfWork(Protocol):
    # Read-only members: an adapter's concrete repositories satisfy them.
    @property
    def accounts(self) -> AccountRepository: ...

    @property
    def nonces(self) -> NonceRepository: ...

    @property
    def ledger(self) -> LedgerRepository: ...

    @property
    def providers(self) -> ProviderRepository: ...

    @property
    def meters(self) -> MeterRepository: ...

    @property
    def credits(self) -> CreditRepository: ...

    @property
    def purchases(self) -> PurchaseRepository: ...

    @property
    def receipts(self) -> ReceiptRepository: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def disputes(self) -> DisputeRepository: ...

    @property
    def validators(self) -> ValidatorRepository: ...

    @property
    def watch(self) -> WatchRepository: ...

    @property
    def analytics(self) -> AnalyticsRepository: ...

    @property
    def connections(self) -> ConnectionRepository: ...

    @property
    def max_writes(self) -> int:
        """The most writes one commit applies atomically; a commit that stages
        more is refused with TransactionTooLarge before anything is written."""

    def commit(self) -> None:
        """Apply every staged write, or none; raises the failing write's error."""

    def commit_in_order(self) -> None:
        """Apply the staged writes in order, each on its own (not one atomic
        write); stop at the first that fails and raise its error. Only for writes
        after the first that are idempotent and are restored if they are lost."""


UnitOfWorkFactory = Callable[[], UnitOfWork]
