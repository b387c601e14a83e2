/**
 * Our proxy for `npm run bench:attacks`, in front of the echo server at ws://127.0.0.1:$UPSTREAM_PORT, with its defaults.
 *
 * BENCH_DIAG=1: on exit, writes to stderr where the canary's time went in the proxy (attacks-proxy-diag.ts).
 */
import { createProxy } from '../../lib/proxy/proxy';
import { MAX_MESSAGE, ready } from './control';
import { diagnoseProxy } from './attacks-proxy-diag';

const upstream = Number(process.env.UPSTREAM_PORT);
const proxy = createProxy({ target: `ws://127.0.0.1:${upstream}/`, host: '127.0.0.1', port: 0, maxPayload: MAX_MESSAGE, maxMessageSize: MAX_MESSAGE });
if (process.env.BENCH_DIAG === '1') diagnoseProxy(proxy);
proxy.on('error', () => undefined);
proxy.on('listening', () => ready(proxy.address()!.port));
