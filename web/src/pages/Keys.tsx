// Your keys: an account's Ed25519 key generated or imported in this browser, kept in its
// localStorage, backed up by the user, and used to sign requests; it is never sent anywhere.

import { useEffect, useState } from "preact/hooks";
import { accountNameProblem, backupFileText, type StoredKey } from "../api/keystore";
import { RpcError } from "../api/jsonrpc";
import { SigningKey } from "../api/signing";
import type { Account } from "../api/types";
import * as format from "../format";
import { keys, market } from "../services";
import { usePageTitle } from "../ui/hooks";
import { ErrorNotice } from "../ui/notices";
import { PageHead } from "../ui/page";

function download(stored: StoredKey) {
  const url = URL.createObjectURL(new Blob([backupFileText(stored)], { type: "text/plain" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `${stored.account}.key`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function KeyCard({ stored, onChange }: { stored: StoredKey; onChange: () => void }) {
  const [account, setAccount] = useState<Account | null | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);

  const lookUp = () =>
    market.getAccount(stored.account).then(
      (found) => setAccount(found),
      (failure: unknown) => {
        if (failure instanceof RpcError && failure.reason === "not_found") setAccount(null);
        else setError(failure);
      },
    );
  useEffect(() => {
    void lookUp();
  }, [stored.account]);

  const create = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const key = keys.signingKey(stored.account);
      if (key === undefined) throw new Error("the key is no longer in this browser");
      setAccount(await market.createAccount(stored.account, key));
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };
  const keyMatches = account != null && account.public_key === stored.public_key;

  return (
    <li class="card" data-testid="key-card" data-account={stored.account}>
      <h2 class="card-title">{stored.account}</h2>
      <dl class="facts facts-wide">
        <div>
          <dt>Public key</dt>
          <dd>
            <code class="wrap" data-testid="public-key">
              {stored.public_key}
            </code>
          </dd>
        </div>
        <div>
          <dt>On the marketplace</dt>
          <dd data-testid="account-state">
            {account === undefined
              ? "checking…"
              : account === null
                ? "no account of this name yet"
                : keyMatches
                  ? `account open · balance ${format.block(account.balance)} · roles ${account.roles.join(", ")}`
                  : "this name belongs to another key"}
          </dd>
        </div>
      </dl>
      {keyMatches && (
        // The pages act as the active key: following a link from this card acts as this account.
        <p class="muted" onClick={() => keys.setActive(stored.account)}>
          Next, as {stored.account}: <a href="#/register">register a provider</a>, <a href="#/trading">buy energy</a>, or
          see the <a href="#/portfolio">portfolio</a>. BLOCK arrives by the operator's deposit (docs/cli.md, deposit).
        </p>
      )}
      {error !== undefined && <ErrorNotice error={error} title="The marketplace refused" />}
      <div class="actions">
        {account === null && (
          <button type="button" class="button button-primary" onClick={create} disabled={busy}>
            {busy ? "Opening…" : "Open this account on the marketplace"}
          </button>
        )}
        <button type="button" class="button" onClick={() => download(stored)}>
          Download a backup ({stored.account}.key)
        </button>
        <button
          type="button"
          class="button button-danger"
          onClick={() => {
            if (confirm(`Remove the key of ${stored.account} from this browser? Without a backup it is lost.`)) {
              keys.remove(stored.account);
              onChange();
            }
          }}
        >
          Remove from this browser
        </button>
      </div>
    </li>
  );
}

export function Keys() {
  usePageTitle("Your keys");
  const [stored, setStored] = useState(() => keys.list());
  const [name, setName] = useState("");
  const [seed, setSeed] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const refresh = () => setStored(keys.list());

  const add = (event: Event, imported: boolean) => {
    event.preventDefault();
    const account = name.trim();
    const nameProblem = accountNameProblem(account);
    if (nameProblem !== null) {
      setProblem(`Account name: ${nameProblem}.`);
      return;
    }
    try {
      const key = imported ? SigningKey.fromSeedHex(seed) : SigningKey.generate();
      keys.save(account, key);
      setProblem(null);
      setName("");
      setSeed("");
      refresh();
    } catch (failure) {
      setProblem(imported ? "The key must be the 64 hex digits of an Ed25519 seed (a .key file)." : String(failure));
    }
  };

  return (
    <>
      <PageHead title="Your keys" />
      <div class="notice">
        <p>
          An account signs what it does on the marketplace with its Ed25519 key. The key is made here, in this browser,
          and stays here (in this site's local storage): the marketplace only ever sees its signatures. Anyone with access
          to this browser profile can use it, and clearing the site's data deletes it, so <strong>download a backup</strong>{" "}
          and keep it somewhere safe. The backup is the command-line client's key file (<code>&lt;name&gt;.key</code>,
          see docs/cli.md).
        </p>
      </div>
      {stored.length > 0 && (
        <ul class="cards cards-wide" aria-label="Keys in this browser">
          {stored.map((entry) => (
            <KeyCard key={entry.account} stored={entry} onChange={refresh} />
          ))}
        </ul>
      )}
      <section class="panel" aria-labelledby="new-key-title">
        <h2 id="new-key-title">Add a key</h2>
        <form class="form" onSubmit={(event) => add(event, seed.trim() !== "")}>
          <label>
            Account name
            <input
              name="account"
              required
              autocomplete="username"
              placeholder="e.g. carol.theblock"
              value={name}
              aria-describedby="account-rule"
              onInput={(event) => setName(event.currentTarget.value)}
            />
            <span id="account-rule" class="hint">
              3–64 characters: a–z, 0–9, dot, underscore, hyphen.
            </span>
          </label>
          <label>
            Import a seed (optional)
            <input
              name="seed"
              autocomplete="off"
              spellcheck={false}
              placeholder="64 hex digits from a .key file; leave empty to generate a new key"
              value={seed}
              onInput={(event) => setSeed(event.currentTarget.value)}
            />
          </label>
          {problem !== null && (
            <p class="field-error" role="alert">
              {problem}
            </p>
          )}
          <button type="submit" class="button button-primary">
            {seed.trim() === "" ? "Generate a new key" : "Import this key"}
          </button>
        </form>
      </section>
    </>
  );
}
