// Hooks the pages share: the live feed's status, and data that is live with a polling fallback.

import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { isPrivateTopic, type LiveEvent, type LiveStatus, type TokenSource } from "../api/live";
import { POLL_INTERVAL_MS } from "../config";
import { live } from "../services";

export function useLiveStatus(): LiveStatus {
  const [status, setStatus] = useState(live.status);
  useEffect(() => {
    setStatus(live.status);
    return live.onStatus(setStatus);
  }, []);
  return status;
}

/**
 * Whether the page's private topics are confirmed on the open connection (true when it has
 * none), and why one was refused.
 */
export function usePrivateTopics(topics: string[]): { ready: boolean; refusal: string | undefined } {
  const privateTopics = topics.filter(isPrivateTopic);
  const read = () => ({
    ready: privateTopics.every((topic) => live.confirmed(topic)),
    refusal: privateTopics.map((topic) => live.refusal(topic)).find((why) => why !== undefined),
  });
  const [state, setState] = useState(read);
  useEffect(() => {
    setState(read());
    return live.onChange(() => setState(read()));
  }, [privateTopics.join(",")]);
  return state;
}

export interface LiveData<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Live: the feed is up and every topic of the page (private ones included) is subscribed. */
  live: boolean;
  /** Why the gateway refused a private topic of the page, if it did (its words). */
  feedRefusal: string | undefined;
  /** When the data was last read or pushed (ms), and how. */
  updatedAt: number | undefined;
  source: "api" | "live" | undefined;
  reload: () => void;
}

/**
 * ``load`` now, again every time the live feed (re)connects (events sent while away are not
 * replayed), and every 10 s while it is not live; ``topics`` events go to ``onEvent``, which
 * returns the new data (or undefined to reload from the API instead).
 */
export function useLiveData<T>(
  load: () => Promise<T>,
  topics: string[],
  onEvent: (event: LiveEvent, current: T | undefined) => T | undefined | "reload",
  deps: unknown[] = [],
  token?: TokenSource,
): LiveData<T> {
  const [state, setState] = useState<Omit<LiveData<T>, "reload" | "live" | "feedRefusal">>({
    data: undefined,
    error: undefined,
    loading: true,
    updatedAt: undefined,
    source: undefined,
  });
  const status = useLiveStatus();
  const current = useRef<T | undefined>(undefined);
  const request = useRef(0);

  const reload = useCallback(() => {
    const ticket = ++request.current;
    setState((previous) => ({ ...previous, loading: previous.data === undefined }));
    load().then(
      (data) => {
        if (ticket !== request.current) return; // a newer read or push already landed
        current.current = data;
        setState({ data, error: undefined, loading: false, updatedAt: Date.now(), source: "api" });
      },
      (error: unknown) => {
        if (ticket !== request.current) return;
        // Keep what is shown; say that it could not be refreshed.
        setState((previous) => ({ ...previous, error, loading: false }));
      },
    );
  }, deps);

  const privateTopics = usePrivateTopics(topics);
  // A page whose private topic is not (yet) subscribed polls, like a page without a feed.
  const isLive = status === "live" && privateTopics.ready;
  // The first read at once (the page does not wait for the WebSocket), and a fresh one
  // whenever the feed becomes live again: events sent while it was away are not replayed.
  const firstRead = useRef(true);
  useEffect(() => {
    if (!firstRead.current) {
      // Other parameters (a filter): what is shown no longer answers them.
      current.current = undefined;
      setState({ data: undefined, error: undefined, loading: true, updatedAt: undefined, source: undefined });
    }
    firstRead.current = false;
    reload();
  }, [reload]);
  const wasLive = useRef(isLive);
  useEffect(() => {
    if (isLive && !wasLive.current) reload();
    wasLive.current = isLive;
  }, [isLive, reload]);

  // The fallback: poll while the feed is not live (connecting and offline alike: a feed that
  // keeps failing to connect flips between the two, and must not hold the polling back).
  useEffect(() => {
    if (isLive) return;
    const timer = setInterval(reload, POLL_INTERVAL_MS);
    return () => clearInterval(timer);
  }, [reload, isLive]);

  useEffect(() => {
    if (topics.length === 0) return;
    return live.subscribe(topics, (event) => {
      const next = onEvent(event, current.current);
      if (next === "reload") {
        reload();
      } else if (next !== undefined) {
        request.current++; // an answer still on its way is older than this push
        current.current = next;
        setState({ data: next, error: undefined, loading: false, updatedAt: Date.now(), source: "live" });
      }
    }, token);
  }, [topics.join(","), reload]);

  return { ...state, live: isLive, feedRefusal: privateTopics.refusal, reload };
}

/** ``document.title`` and the focus on the page's heading when a page opens. */
export function usePageTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · Energy Marketplace`;
  }, [title]);
}
