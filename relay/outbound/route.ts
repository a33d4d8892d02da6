// Which way an outbound message leaves, decided from the authenticated domain
// and the envelope sender alone. The product's sender rules live here:
//
// - the sender parses strictly (the same parser as inbound recipients);
// - the helpdesk's own system domains never leave through a customer's server;
// - a domain's credential sends only for that domain;
// - a Ready support address uses its own server and login; any other sender of
//   the domain (not Ready yet included) goes to the default transport or is
//   refused, as configured;
// - a refusal of a support address that is only not Ready *yet* is temporary
//   (451 4.7.1): an address is briefly not Ready while it is verified, and the
//   helpdesk's queue must retry, not drop the reply. A sender that is no
//   support address at all is refused for good (550 5.7.1).
import { parseMailbox } from "../inbound/address.js";
import type { NextHop } from "../forward/next-hop.js";
import type { SigningKey } from "./dkim.js";
import type { RelayState } from "../state.js";

export type SenderRefusal =
  | "NullSender"
  | "MalformedSender"
  | "SystemDomainSender"
  | "SenderOutsideDomain"
  | "SenderNotReady"
  | "SenderNotSupportAddress"
  | "DomainNotServed";

export type SenderRoute =
  | { ok: true; sender: string; transport: "SupportAddress" | "Default"; nextHop: NextHop; dkim: readonly SigningKey[] }
  | { ok: false; reason: SenderRefusal; code: number; message: string };

/**
 * `purpose` Verification lets an address that is not Ready yet use its own
 * route: that send is what makes it Ready.
 */
export function routeSender(
  state: RelayState,
  domain: string,
  rawSender: string,
  purpose: "Submission" | "Verification" = "Submission",
): SenderRoute {
  const served = state.domains.get(domain);
  if (!served?.entry.outbound) {
    return {
      ok: false,
      reason: "DomainNotServed",
      code: 451,
      message: `4.3.0 ${domain} is not connected for outbound mail on this relay, try again later`,
    };
  }
  if (rawSender === "") {
    return { ok: false, reason: "NullSender", code: 550, message: "5.7.1 A null sender (<>) is not sent through the customer's server" };
  }
  const parsed = parseMailbox(rawSender);
  if (!parsed.ok)
    return { ok: false, reason: "MalformedSender", code: 553, message: `5.1.7 Sender address not accepted (${parsed.problem})` };
  const sender = parsed.mailbox;
  if (state.systemDomains.has(sender.domain)) {
    return {
      ok: false,
      reason: "SystemDomainSender",
      code: 550,
      message: `5.7.1 ${sender.address} is in the helpdesk's own domain ${sender.domain}; it is never sent through a customer's server`,
    };
  }
  if (sender.domain !== domain) {
    return {
      ok: false,
      reason: "SenderOutsideDomain",
      code: 550,
      message: `5.7.1 ${sender.address} is outside ${domain}, the domain these credentials send for`,
    };
  }
  const route = served.senders.get(sender.address);
  if (route && (route.ready || purpose === "Verification"))
    return { ok: true, sender: sender.address, transport: "SupportAddress", nextHop: route.nextHop, dkim: served.dkim };
  if (state.defaultTransport)
    return { ok: true, sender: sender.address, transport: "Default", nextHop: state.defaultTransport, dkim: served.dkim };
  if (route)
    return {
      ok: false,
      reason: "SenderNotReady",
      code: 451,
      message: `4.7.1 ${sender.address} is a support address of ${domain} that is not Ready yet, try again later`,
    };
  return {
    ok: false,
    reason: "SenderNotSupportAddress",
    code: 550,
    message: `5.7.1 ${sender.address} is not a support address of ${domain}`,
  };
}
