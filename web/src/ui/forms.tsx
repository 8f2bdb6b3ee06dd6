// Form parts the pages share: a labelled field that shows its problem beside it, and the
// state of one action (busy, failed, done) so a button cannot send a signed call twice.

import type { ComponentChildren, JSX } from "preact";
import { useRef, useState } from "preact/hooks";

export type FieldInput = Omit<JSX.InputHTMLAttributes<HTMLInputElement>, "onInput" | "value" | "label">;

export function Field(props: {
  label: string;
  name: string;
  value: string;
  onInput: (value: string) => void;
  problem?: string | null | undefined;
  hint?: ComponentChildren;
  input?: FieldInput | undefined;
}) {
  const id = `field-${props.name}`;
  const described = [props.hint !== undefined ? `${id}-hint` : "", props.problem ? `${id}-problem` : ""]
    .filter(Boolean)
    .join(" ");
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <input
        id={id}
        name={props.name}
        value={props.value}
        autocomplete="off"
        aria-invalid={props.problem ? true : undefined}
        aria-describedby={described || undefined}
        onInput={(event) => props.onInput(event.currentTarget.value)}
        {...props.input}
      />
      {props.hint !== undefined && (
        <span class="hint" id={`${id}-hint`}>
          {props.hint}
        </span>
      )}
      {props.problem && (
        <span class="field-error" id={`${id}-problem`} data-testid={`problem-${props.name}`}>
          {props.problem}
        </span>
      )}
    </div>
  );
}

export interface Action<T> {
  busy: boolean;
  error: unknown;
  result: T | undefined;
  run: (work: () => Promise<T>) => Promise<T | undefined>;
  reset: () => void;
}

export function useAction<T>(): Action<T> {
  const [state, setState] = useState<{ busy: boolean; error: unknown; result: T | undefined }>({
    busy: false,
    error: undefined,
    result: undefined,
  });
  // A ref, not the state: two clicks before the next render must not sign two calls.
  const busy = useRef(false);
  return {
    ...state,
    run: async (work) => {
      if (busy.current) return undefined;
      busy.current = true;
      setState({ busy: true, error: undefined, result: undefined });
      try {
        const result = await work();
        setState({ busy: false, error: undefined, result });
        return result;
      } catch (error) {
        setState({ busy: false, error, result: undefined });
        return undefined;
      } finally {
        busy.current = false;
      }
    },
    reset: () => setState({ busy: false, error: undefined, result: undefined }),
  };
}

/** Focus the first field marked invalid: keyboard and screen-reader users land on the problem. */
export function focusFirstProblem(): void {
  requestAnimationFrame(() => document.querySelector<HTMLElement>('main [aria-invalid="true"]')?.focus());
}

/** Show the problems found; false, with the focus on the first, if there is one. */
export function showProblems<P extends object>(found: P, setProblems: (found: P) => void): boolean {
  setProblems(found);
  if (Object.keys(found).length > 0) {
    focusFirstProblem();
    return false;
  }
  return true;
}

/** The button that signs and sends a form's call: disabled (and saying so) while it runs. */
export function SignButton(props: { action: { busy: boolean }; idle: string; busy: string; disabled?: boolean }) {
  return (
    <div class="actions">
      <button type="submit" class="button button-primary" disabled={props.action.busy || props.disabled === true}>
        {props.action.busy ? props.busy : props.idle}
      </button>
    </div>
  );
}
