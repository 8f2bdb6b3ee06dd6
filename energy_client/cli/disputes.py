"""``flag``, ``vote``, ``resolve``, ``dispute`` and ``disputes``: suspect readings
judged by a panel of validators (docs/disputes.md)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from chalicelib.domain import units
from energy_client.cli.arguments import Commands, account_name, paging, signer_option
from energy_client.cli.display import (
    LEFT,
    RIGHT,
    block,
    details,
    emit,
    interval,
    kwh,
    note,
    table,
    when,
)
from energy_client.cli.errors import FAILED, OK, USAGE, CliError, report_rpc_error
from energy_client.cli.session import Handler, Session, more
from energy_client.rpc_client import RpcError

STATUSES: Final = ("open", "revoking", "guilty", "cleared")
SEVERITIES: Final = ("minor", "major", "critical")
VERDICTS: Final = ("guilty", "cleared")

_UNIX_SECONDS: Final = re.compile(r"^\s*\d+(\.\d+)?\s*$")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def moment(text: str) -> int:
    """--from/--to: an ISO-8601 time in UTC, as the CLI prints times
    (``2026-01-01T00:30:00Z``; a bare date is its midnight), or Unix seconds
    like ``meter submit --at`` (at most 3 decimals) -> Unix milliseconds."""
    if _UNIX_SECONDS.match(text):
        try:
            return units.milliseconds_from_seconds(text.strip(), "a time")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give ISO-8601 in UTC (2026-01-01T00:30:00Z) or Unix seconds"
        ) from exc
    # The CLI's times are UTC: a time without an offset is read as UTC.
    aware = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    since = aware - _EPOCH
    if since.days < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is before 1970")
    if since.microseconds % 1000:
        raise argparse.ArgumentTypeError(f"{text!r} has more precision than a millisecond")
    return (since.days * 86_400 + since.seconds) * 1000 + since.microseconds // 1000


# -- hints for the refusals particular to disputes ----------------------------------------

Hint = Callable[[argparse.Namespace], str]


def _dispute_ref(args: argparse.Namespace) -> str:
    return str(getattr(args, "dispute_id", None) or "DISPUTE_ID")


def _signer_ref(args: argparse.Namespace) -> str:
    return str(getattr(args, "signer", None) or "NAME")


HINTS: Final[Mapping[str, Hint]] = {
    "not_on_panel": lambda args: (
        f"only the validators drawn for a dispute vote on it: `dispute {_dispute_ref(args)}` "
        f"shows its panel, `disputes --validator {_signer_ref(args)}` what "
        f"{_signer_ref(args)} was drawn for"
    ),
    "party_to_dispute": lambda args: (
        "a party to a dispute (the provider's owner, a flagger, a buyer of the affected "
        "credits) may not judge it"
    ),
    "already_voted": lambda args: (
        f"a vote is final: `dispute {_dispute_ref(args)}` shows the votes"
    ),
    "dispute_closed": lambda args: (
        f"it is decided: `dispute {_dispute_ref(args)}` shows the verdict"
    ),
    "voting_closed": lambda args: (
        f"the deadline has passed: `resolve {_dispute_ref(args)}` decides it "
        "(without a guilty quorum it is cleared)"
    ),
    "panel_unavailable": lambda args: (
        "a panel needs at least 3 validators who are not a party; nothing was flagged "
        "and no bond was taken"
    ),
    "too_many_disputes": lambda args: (
        "flag the subject of one of the provider's open disputes to join it "
        "(`disputes --provider PROVIDER_ID` lists them)"
    ),
}


def _with_hints(handler: Handler) -> Handler:
    """The handler, with a hint after the refusals above (the rest as main prints them)."""

    def run(session: Session, args: argparse.Namespace) -> int:
        try:
            return handler(session, args)
        except RpcError as exc:
            hint = HINTS.get(exc.reason or "")
            if hint is None:
                raise
            report_rpc_error(exc)
            print(f"hint: {hint(args)}", file=sys.stderr)
            return FAILED

    return run


# -- the commands ------------------------------------------------------------------------


def add_commands(commands: Commands) -> None:
    sub = commands.add(
        "flag", _with_hints(cmd_flag), "flag a suspect reading, posting a bond: opens a dispute"
    )
    subject = sub.add_mutually_exclusive_group(required=True)
    subject.add_argument("--credit", metavar="CREDIT_ID", help="a credit: its reading is flagged")
    subject.add_argument("--reading", metavar="HASH", help="a reading, by its hash")
    subject.add_argument(
        "--meter", metavar="ADDRESS", help="a meter's readings from --from to --to"
    )
    when_help = "ISO-8601 UTC (2026-01-01T00:30:00Z) or Unix seconds"
    sub.add_argument(
        "--from", dest="window_from", type=moment, metavar="TIME", help=f"with --meter: {when_help}"
    )
    sub.add_argument(
        "--to",
        dest="window_to",
        type=moment,
        metavar="TIME",
        help=f"with --meter, excluded: {when_help}; at most 31 days after --from",
    )
    sub.add_argument("--reason", required=True, metavar="TEXT", help="why (1-500 characters)")
    sub.add_argument(
        "--evidence",
        action="append",
        metavar="TEXT",
        help="a note or URL (repeat for more, at most 10)",
    )
    signer_option(sub)

    sub = commands.add("vote", _with_hints(cmd_vote), "a panel member's vote on a dispute")
    sub.add_argument("dispute_id", metavar="DISPUTE_ID")
    sub.add_argument("verdict", choices=VERDICTS, help="guilty (with --severity) or cleared")
    sub.add_argument(
        "--severity",
        choices=SEVERITIES,
        help="with guilty: a slash of 10, 25 or 50 %% of the stake",
    )
    signer_option(sub)

    sub = commands.add(
        "resolve", _with_hints(cmd_resolve), "decide a dispute that has a quorum or is past due"
    )
    sub.add_argument("dispute_id", metavar="DISPUTE_ID")

    sub = commands.add("dispute", cmd_dispute, "one dispute: flags, panel, votes, verdict")
    sub.add_argument("dispute_id", metavar="DISPUTE_ID")

    sub = commands.add("disputes", cmd_disputes, "disputes, newest first (default: open ones)")
    which = sub.add_mutually_exclusive_group()
    which.add_argument("--provider", metavar="PROVIDER_ID", help="against this provider")
    which.add_argument("--flagger", type=account_name, metavar="NAME", help="flagged by NAME")
    which.add_argument(
        "--validator", type=account_name, metavar="NAME", help="NAME was drawn to judge"
    )
    which.add_argument("--status", choices=STATUSES, help="with this status (default: open)")
    paging(sub, "disputes")


def cmd_flag(session: Session, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"reason": args.reason, "evidence": args.evidence or []}
    if args.meter is None:
        if args.window_from is not None or args.window_to is not None:
            raise CliError("--from and --to go with --meter", USAGE)
        if args.credit is not None:
            params["credit_id"] = args.credit
        else:
            params["reading_hash"] = args.reading
    else:
        if args.window_from is None or args.window_to is None:
            raise CliError("--meter needs --from and --to: the window of readings", USAGE)
        if args.window_to <= args.window_from:
            raise CliError("--to is not after --from", USAGE)
        params |= {
            "meter_address": args.meter,
            "window_start_ms": args.window_from,
            "window_end_ms": args.window_to,
        }
    flagger = session.signer(args.signer)
    dispute = session.call("energy.flagDispute", params, flagger)
    if session.json:
        session.print_json(dispute)
        return OK
    flags = dispute["flags"]
    mine = next((f for f in flags if f["flagged_by"] == args.signer), None)
    opened = bool(flags) and flags[0]["flagged_by"] == args.signer
    posted = block(mine["bond_micro_block"]) if mine else "0"
    emit(
        details(
            [
                ("dispute", dispute["dispute_id"]),
                ("status", _status(dispute)),
                ("subject", _subject(dispute["subject"])),
                ("provider", _provider(dispute)),
                ("flags", f"{len(flags)} ({'opened by' if opened else 'joined by'} {args.signer})"),
                (
                    "bond",
                    f"{posted} BLOCK posted ({block(dispute['bond_micro_block'])} BLOCK held)",
                ),
                ("panel", ", ".join(dispute["panel"]) or "-"),
                ("deadline", when(dispute["deadline_ms"])),
            ]
        )
    )
    note(
        f"the affected credits are frozen until the panel decides; "
        f"`dispute {dispute['dispute_id']}` shows its progress"
    )
    return OK


def cmd_vote(session: Session, args: argparse.Namespace) -> int:
    if args.verdict == "guilty" and args.severity is None:
        raise CliError("a guilty vote needs --severity minor|major|critical", USAGE)
    if args.verdict == "cleared" and args.severity is not None:
        raise CliError("a cleared vote takes no --severity", USAGE)
    voter = session.signer(args.signer)
    params = {"dispute_id": args.dispute_id, "verdict": args.verdict}
    if args.severity is not None:
        params["severity"] = args.severity
    dispute = session.call("energy.voteOnDispute", params, voter)
    if session.json:
        session.print_json(dispute)
        return OK
    cast = args.verdict + (f" ({args.severity})" if args.severity else "")
    decided = dispute["status"] != "open"
    emit(f"{args.signer} voted {cast}" + ("; that vote decided it" if decided else ""))
    emit()
    emit(dispute_text(dispute))
    return OK


def cmd_resolve(session: Session, args: argparse.Namespace) -> int:
    dispute = session.call("energy.resolveDispute", {"dispute_id": args.dispute_id})
    if session.json:
        session.print_json(dispute)
        return OK
    emit(dispute_text(dispute))
    if dispute["status"] == "open":
        note(
            f"undecided: no verdict has {dispute['quorum']} agreeing votes and the deadline "
            f"({when(dispute['deadline_ms'])}) is ahead"
        )
    elif dispute["status"] == "revoking":
        note("the revocation goes on; the scheduled job (or `resolve` again) finishes it")
    return OK


def cmd_dispute(session: Session, args: argparse.Namespace) -> int:
    dispute = session.call("energy.getDispute", {"dispute_id": args.dispute_id})
    return session.show(dispute, dispute_text)


def cmd_disputes(session: Session, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    for option, field in (
        ("provider", "provider_id"),
        ("flagger", "flagger"),
        ("validator", "validator"),
        ("status", "status"),
    ):
        if getattr(args, option) is not None:
            params[field] = getattr(args, option)
    result = session.pages(
        "energy.getDisputes", params, "disputes", limit=args.limit, every=args.all
    )
    if session.json:
        session.print_json(result)
        return OK
    disputes = result["disputes"]
    if not disputes:
        emit(_nothing_listed(args))
        return OK
    columns = [
        ("DISPUTE", LEFT),
        ("STATUS", LEFT),
        ("PROVIDER", LEFT),
        ("SUBJECT", LEFT),
        ("FLAGS", RIGHT),
        ("BOND BLOCK", RIGHT),
        ("VOTES", RIGHT),
        ("DEADLINE", LEFT),
    ]
    if args.validator:
        columns.append(("VOTE OF " + args.validator, LEFT))
    rows = []
    for d in disputes:
        row = [
            d["dispute_id"],
            _verdict_status(d),
            d["provider_id"],
            _subject(d["subject"], short=True),
            len(d["flags"]),
            block(d["bond_micro_block"]),
            f"{len(d['votes'])}/{len(d['panel'])}",
            when(d["deadline_ms"]),
        ]
        if args.validator:
            row.append(_vote_of(d, args.validator))
        rows.append(row)
    emit(table(columns, rows))
    more("disputes", result["next_cursor"])
    if args.validator:
        due = [d for d in disputes if _vote_of(d, args.validator) == "due"]
        if due:
            note(
                f"{args.validator} has {len(due)} dispute(s) to vote on: "
                f"`vote DISPUTE_ID guilty --severity minor|major|critical --as {args.validator}` "
                f"or `vote DISPUTE_ID cleared --as {args.validator}`"
            )
    return OK


def _nothing_listed(args: argparse.Namespace) -> str:
    if args.provider:
        return f"no disputes against {args.provider}"
    if args.flagger:
        return f"no disputes flagged by {args.flagger}"
    if args.validator:
        return f"{args.validator} was drawn for no disputes"
    return f"no {args.status or 'open'} disputes"


# -- how a dispute reads -------------------------------------------------------------------


def _subject(subject: Mapping[str, Any], short: bool = False) -> str:
    if subject["kind"] == "reading":
        reading = str(subject["reading_hash"])
        return f"reading {reading[:16] if short else reading}"
    if subject["kind"] == "meter_window":
        window = interval(subject["window_start_ms"], subject["window_end_ms"])
        return f"meter {subject['meter_address']}, {window}"
    return str(subject["kind"])


def _provider(dispute: Mapping[str, Any]) -> str:
    return f"{dispute['provider_id']} (owner {dispute['provider_owner']})"


def _status(dispute: Mapping[str, Any]) -> str:
    status = str(dispute["status"])
    if status == "revoking":
        return "revoking (guilty: the affected credits are being revoked, a page at a time)"
    if status == "open":
        return "open (the affected credits are frozen; the panel votes)"
    return status


def _verdict_status(dispute: Mapping[str, Any]) -> str:
    status = str(dispute["status"])
    severity = dispute.get("severity")
    return f"{status} ({severity})" if severity and status != "cleared" else status


def _vote_text(vote: Mapping[str, Any] | None) -> str:
    if vote is None:
        return "-"
    severity = vote.get("severity")
    return f"{vote['verdict']} ({severity})" if severity else str(vote["verdict"])


def _vote_of(dispute: Mapping[str, Any], validator: str) -> str:
    """A panel member's vote; ``due`` while the dispute is open and it has not voted."""
    vote = next((v for v in dispute["votes"] if v["validator"] == validator), None)
    if vote is not None:
        return _vote_text(vote)
    if validator not in dispute["panel"]:
        return "not on the panel"
    return "due" if dispute["status"] == "open" else "did not vote"


def dispute_text(d: Mapping[str, Any]) -> str:
    """One dispute for people: who flagged what, the panel and its votes, the verdict."""
    votes = {v["validator"]: v for v in d["votes"]}
    guilty = sum(1 for v in d["votes"] if v["verdict"] == "guilty")
    cleared = len(d["votes"]) - guilty
    flags = d["flags"]
    head: list[tuple[str, object]] = [
        ("dispute", d["dispute_id"]),
        ("status", _status(d)),
        ("subject", _subject(d["subject"])),
        ("provider", _provider(d)),
    ]
    if int(d["round"]) > 1:
        head.append(("round", f"{d['round']} (the subject was judged before)"))
    head += [
        ("opened", when(d["opened_at_ms"])),
        ("deadline", f"{when(d['deadline_ms'])} (votes are taken before it)"),
        ("bond", f"{block(d['bond_micro_block'])} BLOCK in {len(flags)} flag(s)"),
        (
            "votes",
            f"{guilty} guilty, {cleared} cleared of {len(d['panel'])}; "
            f"{d['quorum']} agreeing votes decide",
        ),
    ]
    sections = [details(head)]

    flag_rows = (
        (f["flagged_by"], when(f["flagged_at_ms"]), block(f["bond_micro_block"]), f["reason"])
        for f in flags
    )
    flag_table = table(
        [("FLAGGED BY", LEFT), ("AT", LEFT), ("BOND BLOCK", RIGHT), ("REASON", LEFT)], flag_rows
    )
    evidence = [f"evidence from {f['flagged_by']}: {e}" for f in flags for e in f["evidence"]]
    sections.append("\n".join(["flags", flag_table, *evidence]))

    undecided = "-" if d["status"] == "open" else "did not vote"
    panel_rows = (
        (
            n,
            name,
            _vote_text(votes.get(name)) if name in votes else undecided,
            when(votes[name]["voted_at_ms"]) if name in votes else "",
        )
        for n, name in enumerate(d["panel"], start=1)
    )
    panel_table = table(
        [("#", RIGHT), ("VALIDATOR", LEFT), ("VOTE", LEFT), ("VOTED AT", LEFT)], panel_rows
    )
    sections.append("\n".join(["panel", panel_table]))

    verdict = _verdict(d)
    if verdict:
        sections.append("\n".join(["resolution", details(verdict)]))
    return "\n\n".join(sections)


def _verdict(d: Mapping[str, Any]) -> list[tuple[str, object]]:
    """Once resolved: the verdict, who did not vote, and what it did to the money."""
    status = d["status"]
    if status == "open":
        return []
    decided_by = d.get("decided_by")
    decided = f"by {decided_by}, " if decided_by else ""
    pairs: list[tuple[str, object]] = [
        ("verdict", "cleared" if status == "cleared" else f"guilty, {d.get('severity')}"),
        ("decided", f"{decided}{when(d.get('resolved_at_ms'))}"),
        ("non-voters", _names(d.get("non_voters") or [])),
    ]
    bonds = block(d["bond_micro_block"])
    if status == "cleared":
        pairs.append(("bonds", f"{bonds} BLOCK paid to the provider's owner {d['provider_owner']}"))
        return pairs
    r = d.get("revocation")
    if not r:
        return pairs
    complete = bool(r.get("complete"))
    pairs += [
        (
            "slash",
            f"{block(r['slash_micro_block'])} BLOCK from the stake "
            f"(stake left: {block(r['stake_after_micro_block'])} BLOCK)",
        ),
        (
            "refunded",
            f"{block(r['refunded_micro_block'])} BLOCK from the slash to buyers of settled credits",
        ),
        (
            "escrow returned",
            f"{block(r['escrow_refunded_micro_block'])} BLOCK to buyers of reserved credits",
        ),
    ]
    if int(r["unrefunded_micro_block"]):
        pairs.append(
            ("unrefunded", f"{block(r['unrefunded_micro_block'])} BLOCK owed beyond the slash")
        )
    if complete:
        pairs += _payout(r)
        pairs.append(("bonds", f"{bonds} BLOCK returned to the flaggers"))
    else:
        pairs.append(("bonds", f"{bonds} BLOCK held until every affected credit is revoked"))
    revoked = f"{r['revoked_credits']} credit(s), {kwh(r['revoked_wh'])} kWh"
    pairs.append(("revoked", revoked if complete else f"{revoked} so far"))
    receipt = r.get("slash_receipt")
    pairs.append(
        (
            "slash receipt",
            f"{receipt['chain']} #{receipt['sequence']} {receipt['receipt_hash']}"
            if receipt
            else "- (written when every affected credit is revoked)",
        )
    )
    return pairs


def _payout(r: Mapping[str, Any]) -> list[tuple[str, object]]:
    """Where the rest of the slash went, once the dispute has closed."""
    if not r["complete"]:
        rest = int(r["slash_micro_block"]) - int(r["refunded_micro_block"])
        return [("held", f"{block(rest)} BLOCK until every affected credit is revoked")]
    return [
        ("flaggers' reward", f"{block(r['flagger_reward_micro_block'])} BLOCK"),
        ("treasury", f"{block(r['treasury_micro_block'])} BLOCK"),
    ]


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) or "none"
