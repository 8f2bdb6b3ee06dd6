// The pages of later slices of issue 13: said plainly, with what already works elsewhere.

import { usePageTitle } from "../ui/hooks";

export interface PlannedPage {
  path: string;
  title: string;
  will: string;
  meanwhile: string;
}

export const PLANNED: PlannedPage[] = [
  {
    path: "register",
    title: "Register as a provider",
    will: "A three-step wizard: the energy source (type, capacity), the location and meter, then the price and stake, with the API's checks mirrored in the form.",
    meanwhile: "python -m energy_client provider register (docs/cli.md), or energy.registerProvider.",
  },
  {
    path: "trading",
    title: "Trading",
    will: "Offers on sale now, buying with a maximum price, your open purchases and settling them.",
    meanwhile: "python -m energy_client offers, buy and settle (docs/cli.md), or energy.getOffers, energy.purchaseEnergy and energy.settle.",
  },
  {
    path: "portfolio",
    title: "Portfolio",
    will: "Your balance, holdings, history, earnings and carbon achievements; retiring credits and their certificates.",
    meanwhile: "python -m energy_client portfolio and retire, or energy.getPortfolio and energy.retireCredits.",
  },
  {
    path: "disputes",
    title: "Disputes",
    will: "Open and resolved disputes with their evidence, flagging a reading, and voting as a validator.",
    meanwhile: "python -m energy_client disputes, dispute, flag and vote, or energy.getDisputes, energy.flagDispute and energy.voteOnDispute.",
  },
  {
    path: "analytics",
    title: "Analytics",
    will: "Trading volume, revenue and environmental impact over hours and days.",
    meanwhile: "python -m energy_client activity and leaders, or energy.getMarketActivity, energy.getTopProviders and energy.getCarbonOffset.",
  },
];

export function Planned({ page }: { page: PlannedPage }) {
  usePageTitle(page.title);
  return (
    <>
      <div class="page-head">
        <h1 tabIndex={-1}>{page.title}</h1>
        <span class="badge">not yet available</span>
      </div>
      <div class="notice" data-testid="planned">
        <p>This page comes in a later release of the dashboard. {page.will}</p>
        <p>
          Until then: <code>{page.meanwhile}</code>
        </p>
      </div>
    </>
  );
}
