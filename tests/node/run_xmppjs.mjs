// xmpp.js (@xmpp/client) in Node over WebSocket: log in, send a message, wait for one.
// Arguments: a JSON object {service, domain, username, password, to, text, expect}.
// Prints one JSON line: {ok, received} or {ok: false, error}.
import { xml } from "@xmpp/client";
import { args, clientFromArgs } from "./from_args.mjs";

const xmpp = clientFromArgs();

const finish = async (result) => {
  console.log(JSON.stringify(result));
  try { await xmpp.stop(); } catch { /* already closed */ }
  process.exit(result.ok ? 0 : 1);
};
const timer = setTimeout(() => finish({ ok: false, error: "timed out" }), 20000);

xmpp.on("stanza", (stanza) => {
  if (stanza.is("message") && stanza.getChildText("body") === args.expect) {
    clearTimeout(timer);
    finish({ ok: true, received: args.expect, from: stanza.attrs.from });
  }
});
xmpp.on("online", async (address) => {
  await xmpp.send(xml("presence"));
  await xmpp.send(xml("message", { to: args.to, type: "chat" }, xml("body", {}, args.text)));
  console.error(`online as ${address}`);
});
xmpp.start().catch((error) => finish({ ok: false, error: String(error) }));
