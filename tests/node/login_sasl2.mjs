// xmpp.js (@xmpp/client) logs in with SASL2, Bind 2 and FAST, then waits.
// Arguments: a JSON object {service, domain, username, password?, token?,
// agentId, software, device, resource}. With `token` (what an earlier run
// printed) it logs in with FAST and no password.
// Prints one JSON line once online: {ok, jid, token} (the FAST token the server
// issued, if any), or {ok: false, error}; then stays online until stdin closes.
import { xml } from "@xmpp/client";
import { args, clientFromArgs } from "./from_args.mjs";

const userAgent = xml("user-agent", { id: args.agentId },
  xml("software", {}, args.software), xml("device", {}, args.device));
const xmpp = clientFromArgs({ resource: args.resource, userAgent });
xmpp.reconnect.stop();

let issued = null;
xmpp.fast.saveToken = async (token) => { issued = token; };
xmpp.fast.fetchToken = async () => args.token ?? null;

const finish = async (code) => {
  try { await xmpp.stop(); } catch { /* already closed */ }
  process.exit(code);
};
const timer = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: "timed out" }));
  finish(1);
}, 20000);

xmpp.on("online", async (address) => {
  clearTimeout(timer);
  // Bind 2's <bound/> makes the client online while the rest of <success/>
  // (the FAST token) is still being read.
  await new Promise((resolve) => setImmediate(resolve));
  console.log(JSON.stringify({ ok: true, jid: address.toString(), token: issued }));
  process.stdin.resume();
  process.stdin.on("end", () => finish(0));
});
xmpp.start().catch((error) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ ok: false, error: String(error), condition: error.condition }));
  finish(1);
});
