// Where the API and the WebSocket live. By default the page's own origin: the local static
// server (infra/web_server.py) proxies /rpc to the API and /ws to the WebSocket gateway, as
// CloudFront will in front of S3 and API Gateway. VITE_API_URL / VITE_WS_URL (the original
// product's variables) point a build elsewhere.

function sameOriginWebSocket(path: string): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

export const RPC_URL: string = import.meta.env.VITE_API_URL || "/rpc";
export const WS_URL: string = import.meta.env.VITE_WS_URL || sameOriginWebSocket("/ws");
/** While the WebSocket is down, pages poll the API this often (docs/events.md "Reconnecting"). */
export const POLL_INTERVAL_MS = 10_000;
