// Stat cards and the table of top providers, shared by the overview, the portfolio and the
// analytics page.

import type { ComponentChildren } from "preact";
import type { TopProvider } from "../api/types";
import * as format from "../format";
import { energyColour } from "./charts";

/**
 * One figure in a `.metrics` row: a group named by its label, found by the tests as
 * `${prefix}-${id}` (its value as `${prefix}-${id}-value`).
 */
export function Metric(props: {
  id: string;
  prefix: string;
  /** The prefix of the label's id, if it is not `prefix`. */
  labelPrefix?: string;
  label: string;
  value: string;
  unit?: string;
  detail?: ComponentChildren;
}) {
  const labelId = `${props.labelPrefix ?? props.prefix}-${props.id}-label`;
  return (
    <div class="metric" role="group" aria-labelledby={labelId} data-testid={`${props.prefix}-${props.id}`}>
      <p class="metric-label" id={labelId}>
        {props.label}
      </p>
      <p class="metric-value" data-testid={`${props.prefix}-${props.id}-value`}>
        {props.value}
        {props.unit !== undefined && <span class="metric-unit"> {props.unit}</span>}
      </p>
      {props.detail !== undefined && <p class="metric-detail">{props.detail}</p>}
    </div>
  );
}

/**
 * The providers that sold the most. With `location`, the source has its colour and the
 * jurisdiction its own column; without, the two share one.
 */
export function LeaderTable({ providers, testid, location }: { providers: TopProvider[]; testid: string; location: boolean }) {
  return (
    <table class="table" data-testid={testid}>
      <thead>
        <tr>
          <th scope="col">Rank</th>
          <th scope="col">Provider</th>
          <th scope="col">Source</th>
          {location && <th scope="col">Location</th>}
          <th scope="col" class="number">
            Sold
          </th>
        </tr>
      </thead>
      <tbody>
        {providers.map((provider) => (
          <tr key={provider.provider_id}>
            <td>{provider.rank}</td>
            <td>
              <a href={`#/providers/${provider.provider_id}`}>{provider.display_name}</a>
            </td>
            {location ? (
              <>
                <td>
                  <span class="swatch" style={{ background: energyColour(provider.energy_type) }} aria-hidden="true" />
                  {format.titleCase(provider.energy_type)}
                </td>
                <td>{provider.jurisdiction}</td>
              </>
            ) : (
              <td>
                {format.titleCase(provider.energy_type)} · {provider.jurisdiction}
              </td>
            )}
            <td class="number">{format.energy(provider.sold_wh)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
