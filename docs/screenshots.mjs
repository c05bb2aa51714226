// Full-page screenshots at a 1400-px window through the Chrome DevTools Protocol:
//   node --experimental-websocket docs/screenshots.mjs WS_URL OUT_DIR URL...
// (docs/screenshots.sh starts chromium and passes its DevTools address.) Each page is loaded, its
// full height measured, the viewport set to 1400 × that height, and a PNG written to OUT_DIR named
// after the page's path.
import { writeFileSync, mkdirSync } from "node:fs";

const [wsUrl, outDir, ...urls] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const ws = new WebSocket(wsUrl);
let next = 0;
const pending = new Map();
const events = [];
ws.onmessage = (m) => {
  const msg = JSON.parse(m.data);
  if (msg.id && pending.has(msg.id)) { pending.get(msg.id)(msg); pending.delete(msg.id); }
  else events.push(msg);
};
const send = (method, params = {}, sessionId) => new Promise((resolve) => {
  const id = ++next;
  pending.set(id, resolve);
  ws.send(JSON.stringify({ id, method, params, sessionId }));
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await new Promise((r) => (ws.onopen = r));

const { result: { targetId } } = await send("Target.createTarget", { url: "about:blank" });
const { result: { sessionId } } = await send("Target.attachToTarget", { targetId, flatten: true });
await send("Page.enable", {}, sessionId);
for (const url of urls) {
  await send("Emulation.setDeviceMetricsOverride", { width: 1400, height: 900, deviceScaleFactor: 1, mobile: false }, sessionId);
  events.length = 0;
  await send("Page.navigate", { url }, sessionId);
  for (let i = 0; i < 200 && !events.some((e) => e.method === "Page.loadEventFired"); i++) await sleep(100);
  await sleep(1500); // maths and images settle
  const { result } = await send("Page.getLayoutMetrics", {}, sessionId);
  const height = Math.min(Math.ceil(result.cssContentSize.height), 30000);
  await send("Emulation.setDeviceMetricsOverride", { width: 1400, height, deviceScaleFactor: 1, mobile: false }, sessionId);
  await sleep(500);
  const shot = await send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true }, sessionId);
  const path = new URL(url).pathname.replace(/^\/+|\/+$/g, "").replace(/(^|\/)index\.html$/, "");
  // a page "results/mamba/report/" and the self-contained "results/mamba/report.html" must not collide
  const name = path.replace(/\.html$/, "_html").replace(/[^A-Za-z0-9_-]+/g, "_") || "home";
  writeFileSync(`${outDir}/${name}.png`, Buffer.from(shot.result.data, "base64"));
  console.log(`${name}.png  1400 x ${height}`);
}
ws.close();
process.exit(0);
