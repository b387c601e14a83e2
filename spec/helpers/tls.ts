/**
 * A self-signed certificate for TLS specs, made at test time with the `openssl` command line
 * (nothing secret is stored in the repository). The certificate is for CN=localhost with the
 * subjectAltNames DNS:localhost and IP:127.0.0.1, valid for one day, and is made once per
 * process.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A private key and its self-signed certificate, both PEM. */
export interface KeyAndCert {
  key: string;
  cert: string;
}

let cached: KeyAndCert | null = null;

/** True when the `openssl` command can be run (specs that need it skip themselves otherwise). */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The self-signed key and certificate for localhost / 127.0.0.1 (made on the first call). */
export function selfSignedCert(): KeyAndCert {
  if (cached !== null) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'wspipe-tls-'));
  try {
    const keyFile = join(dir, 'key.pem');
    const certFile = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
        '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-days', '1',
        '-keyout', keyFile,
        '-out', certFile,
      ],
      { stdio: 'ignore' },
    );
    cached = { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') };
    return cached;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
