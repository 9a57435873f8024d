import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * A real HTTP proxy between snapkeeper and the simulator that injects faults per SOAP method. It speaks plain
 * HTTP (or HTTPS with `tls`) to snapkeeper and whatever the target URL says to the simulator (HTTPS without
 * verification: it is a lab). Every request is recorded, so tests can assert which calls were made.
 */

export interface FaultRule {
  /** SOAP method name, e.g. `CreateSnapshot_Task`. */
  method: string;
  /** Only the nth occurrence (1-based, counting requests this rule matches); every occurrence when absent. */
  nth?: number;
  /** Only requests whose body contains this string (e.g. a moref value such as `vm-42`). */
  match?: string;
  /**
   * `fault`: answer with a SOAP fault (HTTP 500) without forwarding. `drop`: destroy the client socket without
   * an answer. `delay`: forward after `ms` milliseconds.
   */
  action: 'fault' | 'drop' | 'delay';
  /** For `drop`: `before` (default) loses the request, `after` forwards it and loses the answer. */
  when?: 'before' | 'after';
  ms?: number;
  /** vim25 fault type for `fault` (default `SystemError`). */
  faultType?: string;
  /** faultstring for `fault`. */
  message?: string;
}

export interface SeenRequest {
  method: string;
  body: string;
  /** The rule action applied, if any. */
  injected?: FaultRule['action'];
}

export interface FaultProxy {
  /** SDK URL to put in the snapkeeper configuration (`http://127.0.0.1:PORT/sdk`). */
  url: string;
  /** Every request seen, in arrival order. */
  seen: SeenRequest[];
  /** Methods of `seen`, for short assertions. */
  methods(): string[];
  /** Rules in force; may be changed between calls. */
  rules: FaultRule[];
  /** No rules and nothing seen: what each test of a shared proxy starts from. */
  reset(): void;
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  rules?: FaultRule[];
  /** Serve HTTPS to snapkeeper with this key and certificate (PEM). */
  tls?: { key: string; cert: string };
}

/** The SOAP method of a request body: the first element inside Body. */
export function soapMethodOf(body: string): string {
  const m = /<(?:[\w-]+:)?Body\b[^>]*>\s*<(?:[\w-]+:)?([\w.]+)/.exec(body);
  return m?.[1] ?? '';
}

function faultXml(type: string, message: string): string {
  const esc = message.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ' +
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>' +
    `<faultcode>ServerFaultCode</faultcode><faultstring>${esc}</faultstring>` +
    `<detail><${type}Fault xmlns="urn:vim25" xsi:type="${type}"><reason>${esc}</reason></${type}Fault></detail>` +
    '</soapenv:Fault></soapenv:Body></soapenv:Envelope>'
  );
}

/** Starts the proxy on 127.0.0.1 (ephemeral port) in front of `target` (the simulator's SDK URL). */
export async function startFaultProxy(target: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const upstream = new URL(target);
  const client = upstream.protocol === 'https:' ? https : http;
  const agent =
    upstream.protocol === 'https:'
      ? new https.Agent({ keepAlive: true, rejectUnauthorized: false })
      : new http.Agent({ keepAlive: true });
  const seen: SeenRequest[] = [];
  const counts = new Map<FaultRule, number>();
  const proxy: FaultProxy = {
    url: '',
    seen,
    rules: [...(options.rules ?? [])],
    methods: () => seen.map((s) => s.method),
    reset() {
      proxy.rules = [];
      seen.length = 0;
    },
    close: () =>
      new Promise((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };

  const pick = (method: string, body: string): FaultRule | undefined => {
    for (const rule of proxy.rules) {
      if (rule.method !== method) continue;
      if (rule.match !== undefined && !body.includes(rule.match)) continue;
      const n = (counts.get(rule) ?? 0) + 1;
      counts.set(rule, n);
      if (rule.nth === undefined || rule.nth === n) return rule;
    }
    return undefined;
  };

  const forward = (
    req: http.IncomingMessage,
    body: Buffer,
    res: http.ServerResponse,
    dropAnswer: boolean,
  ) => {
    const headers: http.OutgoingHttpHeaders = {};
    for (const h of ['content-type', 'soapaction', 'cookie']) {
      const v = req.headers[h];
      if (v !== undefined) headers[h] = v;
    }
    headers['content-length'] = body.length;
    const up = client.request(
      {
        protocol: upstream.protocol,
        hostname: upstream.hostname,
        port: upstream.port,
        path: req.url,
        method: 'POST',
        headers,
        agent,
      },
      (upRes) => {
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          if (dropAnswer) return req.socket.destroy();
          const out: http.OutgoingHttpHeaders = {
            'content-type': upRes.headers['content-type'] ?? 'text/xml',
          };
          if (upRes.headers['set-cookie']) out['set-cookie'] = upRes.headers['set-cookie'];
          res.writeHead(upRes.statusCode ?? 502, out);
          res.end(Buffer.concat(chunks));
        });
      },
    );
    up.on('error', () => req.socket.destroy());
    up.end(body);
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      const method = soapMethodOf(text);
      const rule = pick(method, text);
      seen.push({ method, body: text, ...(rule ? { injected: rule.action } : {}) });
      if (!rule) return forward(req, body, res, false);
      switch (rule.action) {
        case 'fault': {
          const xml = faultXml(
            rule.faultType ?? 'SystemError',
            rule.message ?? `injected fault in ${method}`,
          );
          res.writeHead(500, { 'content-type': 'text/xml; charset=utf-8' });
          res.end(xml);
          return;
        }
        case 'drop':
          if (rule.when === 'after') return forward(req, body, res, true);
          req.socket.destroy();
          return;
        case 'delay':
          setTimeout(() => forward(req, body, res, false), rule.ms ?? 0);
          return;
      }
    });
  };

  const server = options.tls
    ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler)
    : http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  proxy.url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}${upstream.pathname || '/sdk'}`;
  return proxy;
}
