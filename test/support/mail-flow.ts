// The fixture of the mail flows end to end (forwarded-flow, verification,
// outbound-flow): the sinks, the customer's server, the operator and the relay,
// started the same way and stopped after the tests in one order.
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, before } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { runDeployment, type RunningDeployment } from "./deployment-runner.js";
import { e2eClients, relayReady, type Clients } from "./e2e.js";
import { eventually } from "./kube.js";
import { randomPassword, startSmtpSink, stopChild, type SmtpSink } from "./mail.js";
import type { Postfix, SubmissionUser } from "./postfix.js";

/** A mail flow end to end: what every one of them starts, and stops after its tests. */
export interface MailFlow extends Clients {
  /** Where the relay delivers inbound mail (the helpdesk's ingestion). */
  helpdesk: SmtpSink;
  /** Where the customer's server delivers what it sends on (the rest of the world). */
  recipientSide: SmtpSink;
  /** support@example.com's own login at the customer's server. */
  login: SubmissionUser;
  /** Set by the test when it starts them; stopped after the tests. */
  operator?: ChildProcess;
  customer?: Postfix & { certFile: string };
  relay?: RunningDeployment;
}

/**
 * Registers, in the describe() that calls it, the hooks of a mail flow: the clients and the two sinks
 * before the tests; after them the relay, the operator, the customer's server and the sinks, stopped in
 * that order. The fields are set once the before hook ran.
 */
export function mailFlow(): MailFlow {
  const flow = { login: { username: "u1@example.com", password: randomPassword(), senders: ["support@example.com"] } } as MailFlow;
  before(async () => {
    Object.assign(flow, await e2eClients());
    flow.helpdesk = await startSmtpSink();
    flow.recipientSide = await startSmtpSink();
  });
  after(async () => {
    await flow.relay?.stop();
    if (flow.operator) await stopChild(flow.operator);
    await flow.customer?.stop();
    await Promise.all([flow.helpdesk?.stop(), flow.recipientSide?.stop()]);
  });
  return flow;
}

/** The Secrets localServerAddress names: the address's login and the CA of the customer's server. */
export function customerSecrets(
  namespace: string,
  flow: Pick<MailFlow, "login"> & { customer?: { certFile: string } | undefined },
): object[] {
  if (!flow.customer) throw new Error("start the customer's server first: its CA goes into customer-ca");
  return [
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "support-smtp", namespace },
      stringData: { username: flow.login.username, password: flow.login.password },
    },
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "customer-ca", namespace },
      stringData: { "ca.crt": readFileSync(flow.customer.certFile, "utf8") },
    },
  ];
}

/**
 * Runs the domain's relay from the Deployment the operator made (deployment-runner) until it is ready,
 * with its log in the error when it never is; `available` then reports the pod available, as the kubelet
 * would. The relay is the flow's, so it is stopped after the tests.
 */
export async function runRelay(flow: MailFlow, namespace: string, { available = true } = {}): Promise<k8s.V1Deployment> {
  const deployment = await eventually("the relay Deployment", () =>
    flow.apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }),
  );
  const relay = await runDeployment(flow.core, deployment);
  flow.relay = relay;
  await relayReady().catch((error: unknown) => {
    throw new Error(`${(error as Error).message}; the relay's log:\n${relay.logs()}`);
  });
  if (available) await relay.markAvailable();
  return deployment;
}
