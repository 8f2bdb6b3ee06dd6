// An account's portfolio, live from its private topic (account:<name>, subscribed with a
// token the account signs in this browser) and read again from the API on every event there:
// events say that money moved, the API says how much (docs/events.md).

import type { Portfolio } from "../api/types";
import { market } from "../services";
import type { ActingAccount } from "./account";
import { useLiveData, type LiveData } from "./hooks";

export function accountTopic(account: string): string {
  return `account:${account}`;
}

export function usePortfolio(acting: ActingAccount): LiveData<Portfolio | null> {
  const account = acting.stored?.account;
  return useLiveData<Portfolio | null>(
    () => (account === undefined ? Promise.resolve(null) : market.getPortfolio(account)),
    account === undefined ? [] : [accountTopic(account)],
    () => "reload",
    [account],
    account === undefined ? undefined : () => market.eventsToken(account, acting.key()),
  );
}

/** What the header of a page that follows an account says about its feed. */
export function feedText(data: LiveData<unknown>): string {
  if (data.live) return "live from your account's private feed";
  if (data.feedRefusal !== undefined) return `the private feed refused (${data.feedRefusal}): refreshing every 10 s`;
  return "refreshing every 10 s until the private feed is live";
}
