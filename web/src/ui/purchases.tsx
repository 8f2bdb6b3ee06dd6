// The table of purchases the trading page (open ones, with a settle button) and the portfolio
// (settled ones, with their receipt) both show: the first four columns are the same.

import type { ComponentChildren } from "preact";
import type { Purchase } from "../api/types";
import * as format from "../format";

export function PurchaseTable({
  purchases,
  testid,
  rowTestid,
  paid,
  last,
  cells,
}: {
  purchases: Purchase[];
  testid: string;
  rowTestid: string;
  /** The heading of the amount paid column. */
  paid: string;
  /** The headings of the two last columns. */
  last: [ComponentChildren, ComponentChildren];
  /** The two last cells of a row. */
  cells: (purchase: Purchase) => [ComponentChildren, ComponentChildren];
}) {
  return (
    <table class="table" data-testid={testid}>
      <thead>
        <tr>
          <th scope="col">Purchase</th>
          <th scope="col">Provider</th>
          <th scope="col" class="number">
            Energy
          </th>
          <th scope="col" class="number">
            {paid}
          </th>
          <th scope="col">{last[0]}</th>
          <th scope="col">{last[1]}</th>
        </tr>
      </thead>
      <tbody>
        {purchases.map((purchase) => {
          const [fifth, sixth] = cells(purchase);
          return (
            <tr key={purchase.transaction_id} data-testid={rowTestid} data-transaction-id={purchase.transaction_id}>
              <td>
                <code>{purchase.transaction_id.slice(0, 16)}…</code>
              </td>
              <td>
                <a href={`#/providers/${purchase.provider_id}`}>{purchase.provider_id}</a>
              </td>
              <td class="number">{format.energy(purchase.amount_wh)}</td>
              <td class="number">{format.block(purchase.total_cost_micro_block)}</td>
              <td>{fifth}</td>
              <td>{sixth}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
