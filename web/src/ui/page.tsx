// The head of a page: its heading (focused when the route changes, hence the tabIndex) and
// what stands beside it.

import type { ComponentChildren } from "preact";

export function PageHead({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="page-head">
      <h1 tabIndex={-1}>{title}</h1>
      {children}
    </div>
  );
}
