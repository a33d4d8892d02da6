// Reaching the API server through an HTTP proxy, as kubectl does: the cluster's `proxy-url`, else
// HTTPS_PROXY and NO_PROXY with the rules of Go's http.ProxyFromEnvironment (which client-go uses,
// in a cluster too). The request goes through an HTTP CONNECT tunnel and TLS to the API server runs
// inside it, so the proxy sees neither the request nor its bearer token; the API server's certificate
// is checked exactly as on a direct connection (CA, tls-server-name).
import https from "node:https";
import net, { BlockList, isIP } from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";

export interface Proxy {
  /** scheme://host:port, without credentials: the only form that goes into messages and logs. */
  display: string;
  url: URL;
  /** Proxy-Authorization, from the URL's user and password. */
  authorization?: string;
  /** Where it was configured, for messages ("proxy-url of cluster x", "HTTPS_PROXY"). */
  source: string;
}

/**
 * A proxy URL from a kubeconfig's `proxy-url` (`strict`: a scheme is required, as client-go's
 * validation does) or from the environment (a bare host:port means http://, as in Go).
 */
export function parseProxy(raw: string, source: string, strict: boolean): Proxy {
  if (strict && !raw.includes("://")) throw new Error(`${source} needs a scheme: http://host:port or https://host:port`);
  let url: URL;
  try {
    url = new URL(!strict && !/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? `http://${raw}` : raw);
  } catch {
    // The value may carry a password: not quoted.
    throw new Error(`${source} is not a URL (expected http://host:port or https://host:port)`);
  }
  const scheme = url.protocol.replace(/:$/, "");
  if (scheme === "socks5" || scheme === "socks5h" || scheme === "socks4" || scheme === "socks")
    throw new Error(
      `${source}: SOCKS proxies (${scheme}://) are not supported by the operator, only http:// and https:// proxies (HTTP CONNECT); ` +
        `run an HTTP proxy in front of the SOCKS one, or reach the API server directly`,
    );
  if (scheme !== "http" && scheme !== "https")
    throw new Error(`${source}: unsupported proxy scheme ${scheme}:// (http:// and https:// are supported)`);
  if (!url.hostname) throw new Error(`${source}: the proxy URL has no host`);
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  const display = `${url.protocol}//${url.host}`;
  return {
    display,
    url: new URL(display),
    ...(user || password ? { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` } : {}),
    source,
  };
}

const env = (environment: NodeJS.ProcessEnv, ...names: string[]) => names.map((n) => environment[n]).find((v) => v) ?? "";

/**
 * The proxy for an https server from HTTPS_PROXY / https_proxy, unless NO_PROXY / no_proxy exempts
 * it; as Go: localhost and loopback addresses never go through a proxy; NO_PROXY holds `*`, IPs,
 * CIDRs, and domains (`example.com` and `.example.com` match it and its subdomains), each with an
 * optional port.
 */
export function proxyFromEnvironment(server: URL, environment: NodeJS.ProcessEnv = process.env): Proxy | undefined {
  const raw = env(environment, "HTTPS_PROXY", "https_proxy");
  if (!raw) return undefined;
  const host = server.hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  const port = server.port || "443";
  if (host === "localhost" || isLoopback(host)) return undefined;
  if (noProxyMatches(env(environment, "NO_PROXY", "no_proxy"), host, port)) return undefined;
  return parseProxy(raw, "HTTPS_PROXY", false);
}

function isLoopback(host: string): boolean {
  const family = isIP(host);
  if (family === 4) return host.startsWith("127.");
  if (family === 6) return new URL(`http://[${host}]`).hostname === "[::1]" || /^::ffff:127\./i.test(host);
  return false;
}

function noProxyMatches(noProxy: string, host: string, port: string): boolean {
  const family = isIP(host);
  for (const entry of noProxy.split(",").map((e) => e.trim().toLowerCase())) {
    if (!entry) continue;
    if (entry === "*") return true;
    const cidr = /^(.+)\/(\d{1,3})$/.exec(entry);
    if (cidr) {
      const kind = isIP(cidr[1]!);
      if (kind && family === kind) {
        const list = new BlockList();
        list.addSubnet(cidr[1]!, Number(cidr[2]), kind === 4 ? "ipv4" : "ipv6");
        if (list.check(host, family === 4 ? "ipv4" : "ipv6")) return true;
      }
      continue;
    }
    const withPort = /^\[(.+)\]:(\d+)$/.exec(entry) ?? (isIP(entry) ? null : /^([^:]+):(\d+)$/.exec(entry));
    const name = withPort ? withPort[1]! : entry.replace(/^\[(.*)\]$/, "$1");
    const entryPort = withPort ? withPort[2]! : "";
    if (entryPort && entryPort !== port) continue;
    const kind = isIP(name);
    if (kind) {
      if (family === kind) {
        const list = new BlockList();
        list.addAddress(name, kind === 4 ? "ipv4" : "ipv6");
        if (list.check(host, family === 4 ? "ipv4" : "ipv6")) return true;
      }
      continue;
    }
    const domain = name.replace(/^\*\./, ".");
    // "example.com" matches itself and its subdomains, ".example.com" only its subdomains (Go's rule).
    if (host.endsWith(domain.startsWith(".") ? domain : `.${domain}`) || (!domain.startsWith(".") && host === domain)) return true;
  }
  return false;
}

/** What a tunnelled connection needs besides the proxy: how long the tunnel may take, and the CA for an https proxy. */
export interface TunnelOptions {
  timeoutMs?: number;
  /** The cluster's CA, also trusted for an https:// proxy's certificate (as kubectl, whose proxy TLS uses the cluster's). */
  ca?: Buffer;
}

/**
 * An https.Agent whose connections are CONNECT tunnels through `proxy`: pooling, keep-alive and the TLS
 * options (CA, client certificate, servername) are the agent's own, only the socket under TLS differs.
 */
export class TunnelAgent extends https.Agent {
  constructor(
    readonly proxy: Proxy,
    options: https.AgentOptions,
    private readonly tunnelOptions: TunnelOptions = {},
  ) {
    super(options);
  }

  override createConnection(options: tls.ConnectionOptions, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    tunnel(this.proxy, options, this.tunnelOptions).then(
      (socket) => callback?.(null, socket),
      (error: Error) => callback?.(error, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

/** A CONNECT tunnel to the API server through the proxy, with TLS to the API server inside it. */
async function tunnel(proxy: Proxy, options: tls.ConnectionOptions, { timeoutMs = 30_000, ca }: TunnelOptions): Promise<tls.TLSSocket> {
  const host = options.host ?? "localhost";
  const target = `${isIP(host) === 6 ? `[${host}]` : host}:${options.port ?? 443}`;
  const via = `proxy ${proxy.display} (${proxy.source})`;
  const proxyHost = proxy.url.hostname.replace(/^\[(.*)\]$/, "$1");
  const proxyPort = Number(proxy.url.port || (proxy.url.protocol === "https:" ? 443 : 80));
  const socket: net.Socket =
    proxy.url.protocol === "https:"
      ? tls.connect({
          host: proxyHost,
          port: proxyPort,
          ...(isIP(proxyHost) ? {} : { servername: proxyHost }),
          // The system's trust and the cluster's CA; the client certificate is for the API server only.
          ca: [...tls.getCACertificates("default"), ...(ca ? [ca] : [])],
          ALPNProtocols: ["http/1.1"],
        })
      : net.connect({ host: proxyHost, port: proxyPort });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.setTimeout(timeoutMs, () => reject(new Error(`${via}: no answer to CONNECT ${target} within ${timeoutMs / 1000} s`)));
      socket.once("error", (error) => reject(new Error(`${via}: cannot open a tunnel to ${target}: ${error.message}`)));
      socket.once(proxy.url.protocol === "https:" ? "secureConnect" : "connect", () => {
        socket.write(
          `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${proxy.authorization ? `Proxy-Authorization: ${proxy.authorization}\r\n` : ""}\r\n`,
        );
      });
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end === -1) {
          if (head.length > 16_384) reject(new Error(`${via}: the answer to CONNECT ${target} has no end of headers`));
          return;
        }
        socket.off("data", onData);
        const status = /^HTTP\/1\.[01] (\d{3})([^\r\n]*)/.exec(head.subarray(0, end).toString("latin1"));
        if (!status) return reject(new Error(`${via}: the answer to CONNECT ${target} is not HTTP`));
        if (status[1] !== "200") return reject(new Error(refusal(via, target, Number(status[1]), status[2]!.trim(), proxy)));
        // Bytes after the headers belong to the tunnel (the API server's TLS).
        if (end + 4 < head.length) socket.unshift(head.subarray(end + 4));
        socket.setTimeout(0);
        resolve();
      };
      socket.on("data", onData);
    });
  } catch (error) {
    socket.destroy();
    throw error;
  }
  socket.removeAllListeners("error");
  const { host: _host, port: _port, path: _path, socket: _socket, ...rest } = options as tls.ConnectionOptions & { path?: string };
  // `host` stays for the certificate check when there is no servername (an IP address).
  const secure = tls.connect({ ...rest, host, socket });
  socket.on("error", (error) => secure.destroy(error));
  return secure;
}

function refusal(via: string, target: string, code: number, reason: string, proxy: Proxy): string {
  const said = `${via} refused the tunnel to the API server ${target}: HTTP ${code}${reason ? ` ${reason}` : ""}`;
  // 401 as well: the tunnel is not up, so it is the proxy asking (tinyproxy 1.11 answers CONNECT so).
  if (code === 407 || code === 401)
    return proxy.authorization
      ? `${said}; the proxy did not accept the user and password in the proxy URL`
      : `${said}; the proxy wants a login: put it in the proxy URL (http://user:password@host:port)`;
  if (code === 403 || code === 405)
    return `${said}; the proxy does not allow CONNECT to this host and port (tinyproxy: ConnectPort, Squid: SSL_ports / CONNECT ACLs)`;
  if (code === 502 || code === 503 || code === 504) return `${said}; the proxy could not reach the API server`;
  return said;
}
