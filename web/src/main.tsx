// The dashboard's shell: navigation, the live status, and a hash router (#/providers): hash
// routes need no server rewrite, so the same build works from S3 behind CloudFront.

import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { signing } from "./devtools";
import { Analytics } from "./pages/Analytics";
import { DisputeDetails, Disputes } from "./pages/Disputes";
import { Keys } from "./pages/Keys";
import { Overview } from "./pages/Overview";
import { CertificateView, Portfolio } from "./pages/Portfolio";
import { ProviderDetails, Providers } from "./pages/Providers";
import { Register } from "./pages/Register";
import { Trading } from "./pages/Trading";
import { live } from "./services";
import { useLiveStatus } from "./ui/hooks";
import "./styles.css";

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
  if (section === "register") return <Register />;
  if (section === "trading") return <Trading />;
  if (section === "portfolio") return id ? <CertificateView certificateId={decodeURIComponent(id)} /> : <Portfolio />;
  if (section === "disputes") return id ? <DisputeDetails disputeId={decodeURIComponent(id)} /> : <Disputes />;
  if (section === "analytics") return <Analytics />;
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
    else document.querySelector<HTMLElement>("main h1")?.focus();
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
