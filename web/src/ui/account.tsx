// The account this browser acts as: one of the keys in its key store (Your keys), chosen here
// and remembered there. Pages that sign read it through useActingAccount.

import { useEffect, useState } from "preact/hooks";
import type { StoredKey } from "../api/keystore";
import type { SigningKey } from "../api/signing";
import { keys } from "../services";

const CHANGED = "energy-marketplace:acting-account";

export interface ActingAccount {
  stored: StoredKey | undefined;
  all: StoredKey[];
  key: () => SigningKey;
  choose: (account: string) => void;
}

export function useActingAccount(): ActingAccount {
  const read = () => ({ stored: keys.active(), all: keys.list() });
  const [state, setState] = useState(read);
  useEffect(() => {
    const changed = () => setState(read());
    addEventListener(CHANGED, changed);
    addEventListener("storage", changed); // another tab changed the keys
    return () => {
      removeEventListener(CHANGED, changed);
      removeEventListener("storage", changed);
    };
  }, []);
  return {
    ...state,
    key: () => {
      const account = state.stored?.account;
      const key = account === undefined ? undefined : keys.signingKey(account);
      if (key === undefined) throw new Error("this browser holds no key for the account: add one under Your keys");
      return key;
    },
    choose: (account: string) => {
      keys.setActive(account);
      dispatchEvent(new Event(CHANGED));
    },
  };
}

/** "Acting as" with the keys of this browser, or where to make one. */
export function ActingAs({ acting, purpose }: { acting: ActingAccount; purpose: string }) {
  if (acting.stored === undefined) {
    return (
      <div class="notice" data-testid="no-key">
        <p>
          {purpose} needs an account key in this browser. <a href="#/keys">Make or import one under Your keys</a>, and
          open its account there.
        </p>
      </div>
    );
  }
  return (
    <div class="acting">
      <label>
        Acting as
        <select
          name="acting-account"
          value={acting.stored.account}
          onChange={(event) => acting.choose(event.currentTarget.value)}
          data-testid="acting-account"
        >
          {acting.all.map((stored) => (
            <option key={stored.account} value={stored.account}>
              {stored.account}
            </option>
          ))}
        </select>
      </label>
      <span class="hint">
        Signed in this browser with its key; <a href="#/keys">manage keys</a>.
      </span>
    </div>
  );
}
