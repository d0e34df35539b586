// The xmpp.js (@xmpp/client) client a test script is asked for: process.argv[2] is
// a JSON object with service, domain, username and password (and what the script
// itself reads). Errors are reported through each script's own events.
import { client } from "@xmpp/client";

export const args = JSON.parse(process.argv[2]);

export function clientFromArgs(options = {}) {
  const xmpp = client({
    service: args.service,
    domain: args.domain,
    username: args.username,
    password: args.password,
    resource: "node",
    ...options,
  });
  xmpp.on("error", () => {});
  return xmpp;
}
