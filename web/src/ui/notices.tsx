// Loading, empty and error states, the same on every page.

import type { ComponentChildren } from "preact";
import { RpcError } from "../api/jsonrpc";

/** An API error in words: what happened, the code and reason, the refused fields, a hint. */
export function ErrorNotice({ error, title, onRetry }: { error: unknown; title?: string; onRetry?: () => void }) {
  const rpc = error instanceof RpcError ? error : undefined;
  const message = rpc?.message ?? (error instanceof Error ? error.message : String(error));
  return (
    <div class="notice notice-error" role="alert" data-testid="error">
      <p class="notice-title">{title ?? "The marketplace could not answer"}</p>
      <p data-testid="error-message">{message}</p>
      {rpc !== undefined && (
        <p class="notice-detail" data-testid="error-code">
          {rpc.code > 0 || rpc.code <= -32000 ? `Error ${rpc.code}` : "No answer from the API"}
          {rpc.reason !== undefined && (
            <>
              {" · "}
              <code>{rpc.reason}</code>
            </>
          )}
          {` · ${rpc.method}`}
        </p>
      )}
      {rpc !== undefined && rpc.fieldErrors.length > 0 && (
        <ul class="notice-fields">
          {rpc.fieldErrors.map((field) => (
            <li key={field.field}>
              <code>{field.field}</code>: {field.message}
            </li>
          ))}
        </ul>
      )}
      {rpc?.hint !== undefined && rpc.fieldErrors.length === 0 && <p class="notice-detail">{rpc.hint}</p>}
      {onRetry !== undefined && (rpc === undefined || rpc.retryable) && (
        <button type="button" class="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" /> Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

/**
 * Data a page reads: its error (with a retry) above, "Loading …" until the first answer, then
 * what `children` makes of it.
 */
export function Loaded<T>(props: {
  live: { data: T | undefined; error: unknown; loading: boolean; reload: () => void };
  title: string;
  what: string;
  children: (data: T) => ComponentChildren;
}) {
  const { live } = props;
  return (
    <>
      {live.error !== undefined && <ErrorNotice error={live.error} title={props.title} onRetry={live.reload} />}
      {live.data === undefined ? live.loading && <Loading what={props.what} /> : props.children(live.data)}
    </>
  );
}
