import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { Secret } from '../util/secret.js';
import { connect, type Vcenter } from '../vsphere/index.js';

/** The user the lab's vCenter accepts (with the random password in DIR/vcenter.password). */
export const LAB_USER = 'administrator@vsphere.local';

/** A session on the lab's simulator as LAB_USER, pinned to its certificate when it serves HTTPS. */
export async function connectToLab(lab: {
  url: string;
  thumbprint?: string | undefined;
  passwordFile: string;
}): Promise<Vcenter> {
  return connect({
    url: lab.url,
    user: LAB_USER,
    password: new Secret((await readFile(lab.passwordFile, 'utf8')).trim()),
    ...(lab.thumbprint !== undefined ? { thumbprint: lab.thumbprint } : {}),
    insecure: false,
    maxConcurrentRequests: 4,
    timeoutSeconds: 60,
  });
}

const SERVICE_CONTENT_REQUEST =
  '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">' +
  '<soapenv:Body><RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this>' +
  '</RetrieveServiceContent></soapenv:Body></soapenv:Envelope>';

/**
 * Whether `url` answers a RetrieveServiceContent SOAP call within 5 s. Over HTTPS the certificate must match
 * `thumbprint` (SHA-256); the lab's certificate is self-signed, so the fingerprint is what makes it trusted.
 */
export function answersSoap(url: string, thumbprint: string | undefined): Promise<boolean> {
  return new Promise((done) => {
    const u = new URL(url);
    const options = {
      method: 'POST',
      headers: { 'content-type': 'text/xml; charset=utf-8', soapaction: 'urn:vim25/8.0' },
      timeout: 5000,
    };
    const onResponse = (res: IncomingMessage) => {
      if (u.protocol === 'https:' && !certificateMatches(res, thumbprint)) {
        res.resume();
        done(false);
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        done(
          res.statusCode === 200 &&
            Buffer.concat(chunks).toString('utf8').includes('RetrieveServiceContentResponse'),
        ),
      );
      res.on('error', () => done(false));
    };
    const req =
      u.protocol === 'https:'
        ? // No agent: a pooled or resumed TLS session may not expose the peer certificate to check.
          httpsRequest(u, { ...options, agent: false, rejectUnauthorized: false }, onResponse)
        : httpRequest(u, options, onResponse);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => done(false));
    req.end(SERVICE_CONTENT_REQUEST);
  });
}

function certificateMatches(res: IncomingMessage, thumbprint: string | undefined): boolean {
  const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
  return thumbprint !== undefined && fingerprint?.toUpperCase() === thumbprint.toUpperCase();
}
