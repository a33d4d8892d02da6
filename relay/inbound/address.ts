// The one parser of envelope addresses. The recipient check and the forwarder
// both use its result, so they can never disagree about where a message goes.
// It is defined in the relay's contract (relay/contract/mailbox.ts), where the
// SupportAddress CRD's pattern and the config check are built from the same
// pieces; the relay's modules import it from here.
export { parseMailbox, type AddressProblem, type Mailbox } from "../contract/mailbox.js";
