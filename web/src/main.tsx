// The dashboard's shell: navigation, the live status, and a hash router (#/providers): hash
// routes need no server rewrite, so the same build works from S3 behind CloudFront.

import { render, type ComponentType } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { signing } from "./devtools";
import { Keys } from "./pages/Keys";
import { Overview } from "./pages/Overview";
import { ProviderDetails, Providers } from "./pages/Providers";
import { live } from "./services";
import { useLiveStatus } from "./ui/hooks";
import { ErrorNotice, Loading } from "./ui/notices";
import "./styles.css";

// The pages a first visit does not open come in their own chunks, fetched when first opened:
// the first load carries the shell, the Overview, Providers and Keys only.
type Loader<P> = () => Promise<ComponentType<P>>;
const Register: Loader<object> = () => import("./pages/Register").then((page) => page.Register);
const Trading: Loader<object> = () => import("./pages/Trading").then((page) => page.Trading);
const Portfolio: Loader<object> = () => import("./pages/Portfolio").then((page) => page.Portfolio);
const CertificateView: Loader<{ certificateId: string }> = () =>
  import("./pages/Portfolio").then((page) => page.CertificateView);
const Disputes: Loader<object> = () => import("./pages/Disputes").then((page) => page.Disputes);
const DisputeDetails: Loader<{ disputeId: string }> = () =>
  import("./pages/Disputes").then((page) => page.DisputeDetails);
const Analytics: Loader<object> = () => import("./pages/Analytics").then((page) => page.Analytics);

/** Whether the user has moved from the first page shown (the focus follows navigations). */
let navigated = false;

/** A page from its chunk: its heading at once (the focus lands there), then the page. */
function Lazy<P extends object>({ load, title, props }: { load: Loader<P>; title: string; props: P }) {
  const [page, setPage] = useState<{ Component: ComponentType<P> } | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let current = true;
    setError(undefined);
    load().then(
      (Component) => current && setPage({ Component }),
      (failure: unknown) => current && setError(failure),
    );
    return () => {
      current = false;
    };
  }, [load, attempt]);
  useEffect(() => {
    // After a navigation the focus went to the stand-in heading, which the page replaced: the
    // focus fell back to the body. Put it on the page's own heading (never on a first visit,
    // and never away from anything the user focused meanwhile).
    const lost = document.activeElement === null || document.activeElement === document.body;
    if (page !== undefined && navigated && lost) document.querySelector<HTMLElement>("main h1")?.focus();
  }, [page]);
  if (page !== undefined) return <page.Component {...props} />;
  return (
    <>
      <h1 tabIndex={-1}>{title}</h1>
      {error === undefined ? (
        <Loading what="the page" />
      ) : (
        <ErrorNotice
          error={error}
          title="This page could not be loaded (a new version may have been deployed: reload the site)"
          onRetry={() => setAttempt(attempt + 1)}
        />
      )}
    </>
  );
}

interface NavItem {
  path: string;
  label: string;
}

const NAV: NavItem[] = [
  { path: "", label: "Overview" },
  { path: "providers", label: "Providers" },
  { path: "register", label: "Register" },
  { path: "trading", label: "Trading" },
  { path: "portfolio", label: "Portfolio" },
  { path: "disputes", label: "Disputes" },
  { path: "analytics", label: "Analytics" },
  { path: "keys", label: "Your keys" },
];

function currentPath(): string {
  return location.hash.replace(/^#\/?/, "");
}

function useRoute(): string {
  const [path, setPath] = useState(currentPath);
  useEffect(() => {
    const changed = () => setPath(currentPath());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return path;
}

function LiveBadge() {
  const status = useLiveStatus();
  const text = {
    live: "Live",
    connecting: "Connecting…",
    offline: "Offline: refreshing every 10 s",
  }[status];
  return (
    <p class={`live live-${status}`} role="status" aria-live="polite" data-testid="live-status" data-status={status}>
      <span class="live-dot" aria-hidden="true" />
      {text}
    </p>
  );
}

function Page({ path }: { path: string }) {
  const [section = "", id] = path.split("/");
  if (section === "") return <Overview />;
  if (section === "providers") return id ? <ProviderDetails providerId={decodeURIComponent(id)} /> : <Providers />;
  if (section === "keys") return <Keys />;
  if (section === "register") return <Lazy load={Register} title="Register as a provider" props={{}} />;
  if (section === "trading") return <Lazy load={Trading} title="Trading" props={{}} />;
  if (section === "portfolio") {
    return id ? (
      <Lazy key={id} load={CertificateView} title="Certificate" props={{ certificateId: decodeURIComponent(id) }} />
    ) : (
      <Lazy load={Portfolio} title="Portfolio" props={{}} />
    );
  }
  if (section === "disputes") {
    return id ? (
      <Lazy key={id} load={DisputeDetails} title="Dispute" props={{ disputeId: decodeURIComponent(id) }} />
    ) : (
      <Lazy load={Disputes} title="Disputes" props={{}} />
    );
  }
  if (section === "analytics") return <Lazy load={Analytics} title="Analytics" props={{}} />;
  return (
    <>
      <h1 tabIndex={-1}>Page not found</h1>
      <p>
        There is no page at <code>#{path}</code>. <a href="#/">Go to the overview</a>.
      </p>
    </>
  );
}

function App() {
  const path = useRoute();
  const section = path.split("/")[0] ?? "";
  const first = useRef(true);
  useEffect(() => {
    // After a navigation, keyboard and screen-reader users land on the new page's heading.
    if (first.current) first.current = false;
    else {
      navigated = true;
      document.querySelector<HTMLElement>("main h1")?.focus();
    }
  }, [path]);
  return (
    <>
      <a class="skip-link" href="#main" onClick={(event) => {
        event.preventDefault();
        document.getElementById("main")?.focus();
      }}>
        Skip to the content
      </a>
      <header class="top">
        <a class="brand" href="#/">
          <span class="brand-mark" aria-hidden="true">⚡</span> Energy Marketplace
        </a>
        <LiveBadge />
      </header>
      <div class="layout">
        <nav aria-label="Pages">
          <ul>
            {NAV.map((item) => (
              <li key={item.path}>
                <a href={`#/${item.path}`} aria-current={section === item.path ? "page" : undefined}>
                  {item.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <main id="main" tabIndex={-1}>
          <Page path={path} />
        </main>
      </div>
    </>
  );
}

Object.assign(window, { energyMarketplace: { signing } });
live.start();
const root = document.getElementById("app");
if (root !== null) render(<App />, root);
