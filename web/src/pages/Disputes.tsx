// Disputes: the list by status or by your part in them (energy.getDisputes), one dispute with
// its evidence, panel and votes (energy.getDispute), flagging a reading with a bond (the signed
// energy.flagDispute) and voting as a drawn validator (the signed energy.voteOnDispute); live
// from the dispute_opened and dispute_resolved events.

import { useState } from "preact/hooks";
import type { LiveEvent } from "../api/live";
import {
  DISPUTE_STATUSES,
  SEVERITIES,
  type Dispute,
  type DisputeFilter,
  type DisputePage,
  type DisputeStatus,
  type Severity,
} from "../api/types";
import type { FlagSubject } from "../api/market";
import * as format from "../format";
import { market } from "../services";
import { ActingAs, useActingAccount, type ActingAccount } from "../ui/account";
import { Field, SignButton, focusFirstProblem, showProblems, useAction } from "../ui/forms";
import { useLiveData, usePageTitle } from "../ui/hooks";
import { Empty, ErrorNotice, Loaded, Loading } from "../ui/notices";
import { HASH, METER_ADDRESS, textProblem } from "../ui/validate";
import { PageHead } from "../ui/page";

const DISPUTE_TOPICS = ["dispute_opened", "dispute_resolved"];

function StatusBadge({ status }: { status: DisputeStatus }) {
  const tone = { open: "paused", revoking: "suspended", guilty: "suspended", cleared: "active" }[status];
  return <span class={`badge badge-${tone}`}>{status}</span>;
}

function subjectText(dispute: Dispute): string {
  const subject = dispute.subject;
  if (subject.kind === "meter_window" && subject.meter_address !== null) {
    return `meter ${subject.meter_address}, ${new Date(subject.window_start_ms ?? 0).toISOString()} to ${new Date(
      subject.window_end_ms ?? 0,
    ).toISOString()}`;
  }
  return `reading ${(subject.reading_hash ?? "").slice(0, 16)}…`;
}

/** Evidence is text from anyone: a web address becomes a link that cannot act on this page. */
function Evidence({ item }: { item: string }) {
  if (/^https?:\/\/\S+$/.test(item)) {
    return (
      <a href={item} rel="noopener noreferrer nofollow" target="_blank">
        {item}
      </a>
    );
  }
  return <span class="evidence-text">{item}</span>;
}

type ListChoice = DisputeStatus | "panel" | "flagged";

function DisputeList({ acting }: { acting: ActingAccount }) {
  const [choice, setChoice] = useState<ListChoice>("open");
  const account = acting.stored?.account;
  const filter: DisputeFilter =
    choice === "panel" && account !== undefined
      ? { validator: account }
      : choice === "flagged" && account !== undefined
        ? { flagger: account }
        : { status: DISPUTE_STATUSES.includes(choice as DisputeStatus) ? (choice as DisputeStatus) : "open" };
  const key = JSON.stringify(filter);
  const page = useLiveData<DisputePage>(() => market.getDisputes(filter), DISPUTE_TOPICS, () => "reload", [key]);
  const disputes = page.data?.disputes ?? [];
  return (
    <section aria-labelledby="list-title">
      <h2 id="list-title">Disputes</h2>
      <div class="filters">
        <label>
          Show
          <select name="dispute_list" value={choice} onChange={(event) => setChoice(event.currentTarget.value as ListChoice)}>
            {DISPUTE_STATUSES.map((status) => (
              <option key={status} value={status}>
                {format.titleCase(status)}
              </option>
            ))}
            {account !== undefined && <option value="panel">Where {account} sits on the panel</option>}
            {account !== undefined && <option value="flagged">Flagged by {account}</option>}
          </select>
        </label>
      </div>
      <Loaded live={page} title="The disputes could not be listed" what="disputes">
        {() => disputes.length === 0 ? (
          <Empty>No dispute here. A reading anyone finds suspect can be flagged below.</Empty>
        ) : (
          <table class="table" data-testid="disputes">
            <thead>
              <tr>
                <th scope="col">Dispute</th>
                <th scope="col">Status</th>
                <th scope="col">Provider</th>
                <th scope="col">Subject</th>
                <th scope="col">Reason</th>
                <th scope="col">Votes</th>
                <th scope="col">Deadline</th>
              </tr>
            </thead>
            <tbody>
              {disputes.map((dispute) => (
                <tr key={dispute.dispute_id} data-testid="dispute-row" data-dispute-id={dispute.dispute_id}>
                  <td>
                    <a href={`#/disputes/${dispute.dispute_id}`}>{dispute.dispute_id.slice(0, 14)}…</a>
                  </td>
                  <td>
                    <StatusBadge status={dispute.status} />
                  </td>
                  <td>
                    <a href={`#/providers/${dispute.provider_id}`}>{dispute.provider_id}</a>
                  </td>
                  <td>{subjectText(dispute)}</td>
                  <td>{dispute.flags[0]?.reason ?? "—"}</td>
                  <td>
                    {dispute.votes.length} of {dispute.panel.length} (quorum {dispute.quorum})
                  </td>
                  <td>{new Date(dispute.deadline_ms).toLocaleString("en-GB")}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Loaded>
    </section>
  );
}

type SubjectKind = "credit_id" | "reading_hash" | "meter_window";

function FlagForm({ acting }: { acting: ActingAccount }) {
  const [kind, setKind] = useState<SubjectKind>("credit_id");
  const [hash, setHash] = useState("");
  const [meter, setMeter] = useState("");
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [reason, setReason] = useState("");
  const [evidence, setEvidence] = useState("");
  const [problems, setProblems] = useState<Record<string, string>>({});
  const action = useAction<Dispute>();
  const evidenceItems = evidence
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");

  const submit = (event: Event) => {
    event.preventDefault();
    const found: Record<string, string> = {};
    let subject: FlagSubject | undefined;
    if (kind === "meter_window") {
      const start = Date.parse(from);
      const end = Date.parse(to);
      if (!METER_ADDRESS.test(meter.trim())) found["meter"] = "3–64 characters of A–Z a–z 0–9 _ -";
      if (!Number.isFinite(start) || !Number.isFinite(end)) found["window"] = "give both times";
      else if (end <= start) found["window"] = "the end must be after the start";
      else if (end - start > 31 * 86_400_000) found["window"] = "at most 31 days";
      subject = { meter_address: meter.trim(), window_start_ms: start, window_end_ms: end };
    } else {
      const value = hash.trim().toLowerCase();
      if (!HASH.test(value)) found["hash"] = "64 hex digits";
      subject = kind === "credit_id" ? { credit_id: value } : { reading_hash: value };
    }
    const why = textProblem(reason.trim(), 1, 500);
    if (why !== null) found["reason"] = why;
    if (evidenceItems.length > 10) found["evidence"] = `at most 10 items (now ${evidenceItems.length})`;
    else if (evidenceItems.some((item) => item.length > 2000)) found["evidence"] = "each item at most 2,000 characters";
    if (!showProblems(found, setProblems)) return;
    if (subject === undefined) {
      focusFirstProblem();
      return;
    }
    const flagger = acting.stored?.account;
    if (flagger === undefined) return;
    const flag = { ...subject, reason: reason.trim(), evidence: evidenceItems };
    void action.run(() => market.flagDispute(flagger, acting.key(), flag));
  };

  return (
    <form class="panel" onSubmit={submit} noValidate aria-labelledby="flag-title" data-testid="flag-form">
      <h2 id="flag-title">Flag a suspect reading</h2>
      <p class="muted">
        Flagging posts a bond (10 BLOCK by default) from your balance; it comes back if the provider is found guilty, and
        goes to the provider if the dispute is cleared. The affected credits leave the market until the panel decides.
      </p>
      <fieldset class="choices">
        <legend>What is suspect</legend>
        {(
          [
            ["credit_id", "A credit (by its id)"],
            ["reading_hash", "A reading (by its hash)"],
            ["meter_window", "A meter over a time window"],
          ] as [SubjectKind, string][]
        ).map(([value, label]) => (
          <label key={value} class="choice">
            <input type="radio" name="flag_subject" value={value} checked={kind === value} onChange={() => setKind(value)} />
            {label}
          </label>
        ))}
      </fieldset>
      {kind === "meter_window" ? (
        <>
          <Field label="Meter address" name="flag_meter" value={meter} onInput={setMeter} problem={problems["meter"]} />
          <div class="field-row">
            <Field
              label="From"
              name="flag_from"
              value={from}
              onInput={setFrom}
              problem={problems["window"]}
              input={{ type: "datetime-local" }}
            />
            <Field label="To (excluded)" name="flag_to" value={to} onInput={setTo} hint="At most 31 days" input={{ type: "datetime-local" }} />
          </div>
        </>
      ) : (
        <Field
          label={kind === "credit_id" ? "Credit id" : "Reading hash"}
          name="flag_hash"
          value={hash}
          onInput={setHash}
          problem={problems["hash"]}
          hint="64 hex digits, as the provider's credits or your holdings list them"
          input={{ spellcheck: false }}
        />
      )}
      <Field
        label="Reason"
        name="flag_reason"
        value={reason}
        onInput={setReason}
        problem={problems["reason"]}
        hint="1–500 characters: what makes the reading implausible"
      />
      <div class="field">
        <label for="field-flag_evidence">Evidence (optional)</label>
        <textarea
          id="field-flag_evidence"
          name="flag_evidence"
          rows={3}
          value={evidence}
          aria-invalid={problems["evidence"] ? true : undefined}
          aria-describedby="field-flag_evidence-hint"
          onInput={(event) => setEvidence(event.currentTarget.value)}
        />
        <span class="hint" id="field-flag_evidence-hint">
          One note or web address a line, at most 10
        </span>
        {problems["evidence"] && <span class="field-error">{problems["evidence"]}</span>}
      </div>
      {action.error !== undefined && <ErrorNotice error={action.error} title="The flag was refused" />}
      {action.result !== undefined && (
        <div class="notice notice-ok" role="status" data-testid="flag-result">
          <p>
            Flagged: <a href={`#/disputes/${action.result.dispute_id}`}>{action.result.dispute_id}</a> is{" "}
            {action.result.status}, judged by {action.result.panel.join(", ")}.
          </p>
        </div>
      )}
      <SignButton action={action} idle="Sign and flag" busy="Flagging…" />
    </form>
  );
}

function VoteForm({ dispute, acting, onVoted }: { dispute: Dispute; acting: ActingAccount; onVoted: (d: Dispute) => void }) {
  const [verdict, setVerdict] = useState<"guilty" | "cleared">("cleared");
  const [severity, setSeverity] = useState<Severity>("minor");
  const action = useAction<Dispute>();
  const validator = acting.stored?.account;
  if (validator === undefined) return null;
  if (!dispute.panel.includes(validator)) {
    return dispute.status === "open" ? (
      <p class="muted" data-testid="not-on-panel">
        {validator} is not on this dispute's panel: only the validators drawn for it vote.
      </p>
    ) : null;
  }
  const voted = dispute.votes.find((vote) => vote.validator === validator);
  if (voted !== undefined) {
    return (
      <p data-testid="your-vote">
        You voted <strong>{voted.verdict}</strong>
        {voted.severity !== null && ` (${voted.severity})`} on {new Date(voted.voted_at_ms).toLocaleString("en-GB")}.
      </p>
    );
  }
  if (dispute.status !== "open") return null;
  const submit = (event: Event) => {
    event.preventDefault();
    void action
      .run(() =>
        market.voteOnDispute(validator, acting.key(), {
          dispute_id: dispute.dispute_id,
          verdict,
          ...(verdict === "guilty" ? { severity } : {}),
        }),
      )
      .then((done) => {
        if (done !== undefined) onVoted(done);
      });
  };
  return (
    <form class="panel" onSubmit={submit} aria-labelledby="vote-title" data-testid="vote-form">
      <h2 id="vote-title">Your vote, as a validator on the panel</h2>
      <p class="muted">A vote is final. {dispute.quorum} agreeing votes decide; a guilty verdict slashes the stake by its severity.</p>
      <fieldset class="choices">
        <legend>Verdict</legend>
        <label class="choice">
          <input type="radio" name="verdict" value="cleared" checked={verdict === "cleared"} onChange={() => setVerdict("cleared")} />
          Cleared: the reading is honest
        </label>
        <label class="choice">
          <input type="radio" name="verdict" value="guilty" checked={verdict === "guilty"} onChange={() => setVerdict("guilty")} />
          Guilty: the reading is fraudulent
        </label>
      </fieldset>
      {verdict === "guilty" && (
        <label>
          Severity
          <select name="severity" value={severity} onChange={(event) => setSeverity(event.currentTarget.value as Severity)}>
            {SEVERITIES.map((level) => (
              <option key={level} value={level}>
                {level} (slash {{ minor: "10", major: "25", critical: "50" }[level]} %)
              </option>
            ))}
          </select>
        </label>
      )}
      {action.error !== undefined && <ErrorNotice error={action.error} title="The vote was refused" />}
      <SignButton action={action} idle="Sign and vote" busy="Voting…" />
    </form>
  );
}

export function DisputeDetails({ disputeId }: { disputeId: string }) {
  usePageTitle("Dispute");
  const acting = useActingAccount();
  const dispute = useLiveData<Dispute>(
    () => market.getDispute(disputeId),
    DISPUTE_TOPICS,
    (event: LiveEvent) => ((event.data as { dispute_id?: string }).dispute_id === disputeId ? "reload" : undefined),
    [disputeId],
  );
  const resolve = useAction<Dispute>();
  const d = dispute.data;
  const now = Date.now();
  return (
    <>
      <p>
        <a href="#/disputes">← All disputes</a>
      </p>
      <PageHead title="Dispute">
        {d !== undefined && <StatusBadge status={d.status} />}
      </PageHead>
      {dispute.error !== undefined && <ErrorNotice error={dispute.error} title="This dispute could not be read" onRetry={dispute.reload} />}
      {d === undefined ? (
        dispute.loading && <Loading what="the dispute" />
      ) : (
        <article data-testid="dispute-details" data-status={d.status}>
          <p class="muted">
            <code>{d.dispute_id}</code> · round {d.round} · against <a href={`#/providers/${d.provider_id}`}>{d.provider_id}</a>{" "}
            (owner {d.provider_owner})
          </p>
          <dl class="facts facts-wide details-facts">
            <div>
              <dt>Subject</dt>
              <dd>
                {d.subject.reading_hash !== null ? (
                  <>
                    the reading <code class="wrap">{d.subject.reading_hash}</code>
                  </>
                ) : (
                  subjectText(d)
                )}
              </dd>
            </div>
            <div>
              <dt>Bonds posted</dt>
              <dd>{format.block(d.bond_micro_block)}</dd>
            </div>
            <div>
              <dt>Opened</dt>
              <dd>{new Date(d.opened_at_ms).toLocaleString("en-GB")}</dd>
            </div>
            <div>
              <dt>Votes taken until</dt>
              <dd>{new Date(d.deadline_ms).toLocaleString("en-GB")}</dd>
            </div>
            {d.severity !== null && (
              <div>
                <dt>Severity</dt>
                <dd>{d.severity}</dd>
              </div>
            )}
            {d.decided_by !== null && (
              <div>
                <dt>Decided by</dt>
                <dd>
                  {d.decided_by} on {new Date(d.resolved_at_ms ?? 0).toLocaleString("en-GB")}
                </dd>
              </div>
            )}
          </dl>
          <section class="panel" aria-labelledby="evidence-title">
            <h2 id="evidence-title">Flags and evidence</h2>
            <ol class="flags">
              {d.flags.map((flag) => (
                <li key={`${flag.flagged_by}-${flag.flagged_at_ms}`} data-testid="flag">
                  <p>
                    <strong>{flag.flagged_by}</strong> on {new Date(flag.flagged_at_ms).toLocaleString("en-GB")} (bond{" "}
                    {format.block(flag.bond_micro_block)}): {flag.reason}
                  </p>
                  {flag.evidence.length > 0 && (
                    <ul>
                      {flag.evidence.map((item) => (
                        <li key={item}>
                          <Evidence item={item} />
                        </li>
                      ))}
                    </ul>
                  )}
                </li>
              ))}
            </ol>
          </section>
          <section class="panel" aria-labelledby="panel-title">
            <h2 id="panel-title">Panel and votes</h2>
            <table class="table" data-testid="panel">
              <thead>
                <tr>
                  <th scope="col">Validator (draw order)</th>
                  <th scope="col">Vote</th>
                </tr>
              </thead>
              <tbody>
                {d.panel.map((validator) => {
                  const vote = d.votes.find((v) => v.validator === validator);
                  return (
                    <tr key={validator}>
                      <td>{validator}</td>
                      <td>
                        {vote === undefined
                          ? d.non_voters.includes(validator)
                            ? "never voted"
                            : "not yet"
                          : `${vote.verdict}${vote.severity !== null ? ` (${vote.severity})` : ""}`}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
            <p class="muted">
              {d.quorum} agreeing votes decide; at the deadline without a guilty quorum the dispute is cleared.
            </p>
          </section>
          {d.revocation !== null && (
            <section class="panel" aria-labelledby="revocation-title">
              <h2 id="revocation-title">The verdict's consequences</h2>
              <dl class="facts facts-wide">
                <div>
                  <dt>Stake slashed</dt>
                  <dd>
                    {format.block(d.revocation.slash_micro_block)} (left {format.block(d.revocation.stake_after_micro_block)})
                  </dd>
                </div>
                <div>
                  <dt>Credits revoked</dt>
                  <dd>
                    {d.revocation.revoked_credits} ({format.energy(d.revocation.revoked_wh)})
                  </dd>
                </div>
                <div>
                  <dt>Buyers refunded</dt>
                  <dd>{format.block(d.revocation.refunded_micro_block + d.revocation.escrow_refunded_micro_block)}</dd>
                </div>
                <div>
                  <dt>Revocation</dt>
                  <dd>{d.revocation.complete ? "complete" : "running"}</dd>
                </div>
              </dl>
            </section>
          )}
          <ActingAs acting={acting} purpose="Voting" />
          <VoteForm dispute={d} acting={acting} onVoted={() => dispute.reload()} />
          {d.status === "open" && now >= d.deadline_ms && (
            <div class="actions">
              <button type="button" class="button" onClick={() => void resolve.run(() => market.resolveDispute(d.dispute_id)).then(dispute.reload)}>
                Resolve it now (the deadline has passed)
              </button>
            </div>
          )}
          {resolve.error !== undefined && <ErrorNotice error={resolve.error} title="The dispute could not be resolved" />}
        </article>
      )}
    </>
  );
}

export function Disputes() {
  usePageTitle("Disputes");
  const acting = useActingAccount();
  return (
    <>
      <PageHead title="Disputes" />
      <DisputeList acting={acting} />
      <ActingAs acting={acting} purpose="Flagging a reading" />
      {acting.stored !== undefined && <FlagForm acting={acting} />}
    </>
  );
}
