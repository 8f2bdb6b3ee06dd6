// Live events over the WebSocket API (docs/events.md): subscribe to topics, reconnect with a
// growing, jittered delay (1 s, 2 s, 4 s ... 30 s), subscribe again after every reconnect,
// and keep the connection from idling out with an application ping. A private topic
// (account:<name>) is subscribed on its own with a token the account signs in this browser,
// so that a refused token leaves the public topics live.

export type LiveStatus = "connecting" | "live" | "offline";

export interface LiveEvent<T = unknown> {
  topic: string;
  event: string;
  at_ms: number;
  data: T;
}

type EventHandler = (event: LiveEvent) => void;
type StatusHandler = (status: LiveStatus) => void;
/** Makes a fresh token for a private topic (one per subscription: a token expires). */
export type TokenSource = () => Promise<string>;

const PRIVATE_PREFIX = "account:";
const PRIVATE_ID = "private:";

export function isPrivateTopic(topic: string): boolean {
  return topic.startsWith(PRIVATE_PREFIX);
}

const FIRST_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;
// API Gateway closes a connection after 10 minutes without a message from the client.
const PING_EVERY_MS = 4 * 60_000;
const SUBSCRIBE_ID = "resubscribe";

export class LiveFeed {
  readonly url: string;
  status: LiveStatus = "offline";
  /** How many times the feed has become live (a page reads the API again after each). */
  generation = 0;
  #socket: WebSocket | undefined;
  #attempt = 0;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #ping: ReturnType<typeof setInterval> | undefined;
  #stopped = true;
  readonly #topics = new Map<string, number>(); // topic -> how many subscribers hold it
  readonly #handlers = new Set<EventHandler>();
  readonly #statusHandlers = new Set<StatusHandler>();
  readonly #tokens = new Map<string, TokenSource>(); // private topic -> its token's maker
  readonly #confirmed = new Set<string>(); // private topics the gateway confirmed on this connection
  readonly #refused = new Map<string, string>(); // private topic -> why the gateway refused it
  readonly #changeHandlers = new Set<() => void>();

  constructor(url: string) {
    this.url = url;
  }

  /** Follow ``topics``; returns the function that stops following them. */
  subscribe(topics: string[], onEvent: EventHandler, token?: TokenSource): () => void {
    const wanted = new Set(topics);
    const handler: EventHandler = (event) => {
      if (wanted.has(event.topic)) onEvent(event);
    };
    this.#handlers.add(handler);
    const added = topics.filter((topic) => {
      const count = this.#topics.get(topic) ?? 0;
      this.#topics.set(topic, count + 1);
      return count === 0;
    });
    const addedPublic = added.filter((topic) => !isPrivateTopic(topic));
    if (addedPublic.length > 0) this.#send({ action: "subscribe", topics: addedPublic });
    for (const topic of added.filter(isPrivateTopic)) {
      if (token !== undefined) this.#tokens.set(topic, token);
      this.#subscribePrivate(topic);
    }
    this.start();
    return () => {
      this.#handlers.delete(handler);
      const removed = topics.filter((topic) => {
        const count = (this.#topics.get(topic) ?? 1) - 1;
        if (count > 0) this.#topics.set(topic, count);
        else this.#topics.delete(topic);
        return count === 0;
      });
      if (removed.length > 0) this.#send({ action: "unsubscribe", topics: removed });
      for (const topic of removed.filter(isPrivateTopic)) {
        this.#tokens.delete(topic);
        this.#confirmed.delete(topic);
        this.#refused.delete(topic);
      }
    };
  }

  /** Whether the gateway confirmed this private topic on the open connection. */
  confirmed(topic: string): boolean {
    return this.#confirmed.has(topic);
  }

  /** Why the gateway refused a private topic (its error message), if it did. */
  refusal(topic: string): string | undefined {
    return this.#refused.get(topic);
  }

  /** Called when a private topic is confirmed, refused or lost. */
  onChange(handler: () => void): () => void {
    this.#changeHandlers.add(handler);
    return () => this.#changeHandlers.delete(handler);
  }

  #subscribePrivate(topic: string): void {
    const socket = this.#socket;
    const source = this.#tokens.get(topic);
    if (socket === undefined || socket.readyState !== WebSocket.OPEN) return; // sent on (re)connect
    if (source === undefined) {
      this.#refuse(topic, "no key in this browser signs for this account");
      return;
    }
    source().then(
      (token) => {
        // Still the same connection and still wanted: send it with its own id.
        if (this.#socket === socket && this.#topics.has(topic)) {
          this.#send({ action: "subscribe", topics: [topic], token, id: `${PRIVATE_ID}${topic}` });
        }
      },
      (error: unknown) => this.#refuse(topic, `no token could be made: ${String(error)}`),
    );
  }

  #refuse(topic: string, why: string): void {
    this.#confirmed.delete(topic);
    this.#refused.set(topic, why);
    this.#changed();
  }

  #changed(): void {
    for (const handler of this.#changeHandlers) handler();
  }

  onStatus(handler: StatusHandler): () => void {
    this.#statusHandlers.add(handler);
    return () => this.#statusHandlers.delete(handler);
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    clearInterval(this.#ping);
    this.#socket?.close(1000, "page closed");
    this.#socket = undefined;
    this.#setStatus("offline");
  }

  #connect(): void {
    this.#setStatus("connecting");
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this.#scheduleReconnect();
      return;
    }
    this.#socket = socket;
    socket.addEventListener("open", () => {
      clearInterval(this.#ping);
      this.#ping = setInterval(() => this.#send({ action: "ping" }), PING_EVERY_MS);
      const topics = [...this.#topics.keys()].filter((topic) => !isPrivateTopic(topic));
      // Live once the gateway has confirmed the subscriptions, not merely once the socket opened.
      if (topics.length > 0) this.#send({ action: "subscribe", topics, id: SUBSCRIBE_ID });
      else this.#becameLive();
      for (const topic of this.#topics.keys()) if (isPrivateTopic(topic)) this.#subscribePrivate(topic);
    });
    socket.addEventListener("message", (message) => this.#receive(message.data));
    socket.addEventListener("close", () => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      clearInterval(this.#ping);
      if (this.#confirmed.size > 0) {
        this.#confirmed.clear(); // subscriptions do not survive a connection
        this.#changed();
      }
      if (!this.#stopped) this.#scheduleReconnect();
    });
  }

  #becameLive(): void {
    this.#attempt = 0;
    this.generation += 1;
    this.#setStatus("live");
  }

  #scheduleReconnect(): void {
    this.#setStatus("offline");
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.#attempt);
    this.#attempt += 1;
    // Full jitter on the upper half: clients dropped together do not return together.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => this.#connect(), delay);
  }

  #receive(raw: unknown): void {
    if (typeof raw !== "string") return;
    let frame: { type?: unknown; events?: unknown; id?: unknown };
    try {
      frame = JSON.parse(raw) as typeof frame;
    } catch {
      return;
    }
    if (typeof frame.id === "string" && frame.id.startsWith(PRIVATE_ID)) {
      const topic = frame.id.slice(PRIVATE_ID.length);
      if (frame.type === "subscribed") {
        this.#confirmed.add(topic);
        this.#refused.delete(topic);
        this.#changed();
      } else {
        const message = (frame as { message?: unknown }).message;
        this.#refuse(topic, typeof message === "string" ? message : "the gateway refused the subscription");
      }
      return;
    }
    if (frame.id === SUBSCRIBE_ID) {
      // Refused (an error answer): the pages keep polling; the next reconnect tries again.
      if (frame.type === "subscribed") this.#becameLive();
      return;
    }
    if (frame.type !== "events" || !Array.isArray(frame.events)) return;
    for (const event of frame.events as LiveEvent[]) {
      for (const handler of this.#handlers) handler(event);
    }
  }

  #send(message: Record<string, unknown>): void {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }

  #setStatus(status: LiveStatus): void {
    if (status === this.status) return;
    this.status = status;
    for (const handler of this.#statusHandlers) handler(status);
  }
}
