// xmpp.js (@xmpp/client) with stream management: log in, cut the socket after the
// first message, let xmpp.js reconnect and resume, and wait for the second one.
// Arguments: a JSON object {service, domain, username, password, expect: [bodies]}.
// Prints JSON lines: {event: "online", jid}, {event: "cut"}, {event: "resumed"}, then
// {event: "done", received: [...]} (every body seen, duplicates included) or
// {event: "failed", error}.
import { xml } from "@xmpp/client";
import { args, clientFromArgs } from "./from_args.mjs";

const xmpp = clientFromArgs();
const say = (line) => console.log(JSON.stringify(line));
const received = [];
let cut = false;
let online = false;

const finish = async (line) => {
  say(line);
  try { await xmpp.stop(); } catch { /* already closed */ }
  process.exit(line.event === "done" ? 0 : 1);
};
const timer = setTimeout(() => finish({ event: "failed", error: "timed out", received }), 30000);

xmpp.streamManagement.on("resumed", () => say({ event: "resumed" }));
xmpp.on("stanza", (stanza) => {
  const body = stanza.is("message") && stanza.getChildText("body");
  if (!body) return;
  received.push(body);
  if (!cut) {
    cut = true;
    // Once xmpp.js has counted the message (its middleware runs after this event),
    // the network goes: no </stream> the server could take for a goodbye.
    setTimeout(() => {
      const socket = xmpp.socket.socket;
      if (typeof socket.destroy === "function") socket.destroy(); else socket.close();
      say({ event: "cut" });
    }, 200);
  } else if (args.expect.every((text) => received.includes(text))) {
    clearTimeout(timer);
    // Anything sent twice would have arrived with the first resent stanzas.
    setTimeout(() => finish({ event: "done", received }), 500);
  }
});
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
xmpp.on("online", async () => {
  if (online) return;
  online = true;
  // xmpp.js may report "online" before its <enabled/> is handled, and resets its
  // counter when it is: send nothing to count before then.
  for (let i = 0; i < 100 && !xmpp.streamManagement.enabled; i++) await sleep(50);
  await sleep(100);
  await xmpp.send(xml("presence"));
  say({ event: "online", jid: xmpp.jid.toString() });
});
xmpp.start().catch((error) => finish({ event: "failed", error: String(error) }));
