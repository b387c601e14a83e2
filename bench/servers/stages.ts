/**
 * Our stages composed by hand with pipe(), no WebSocket class (the composition is in
 * stage-pipeline.ts): echo hands messages on as they are, sink answers each with an empty one.
 *
 * The handshake is answered with validateUpgradeRequest + buildAcceptResponse.
 */
import * as net from 'node:net';
import { Transform } from 'readable-stream';
import { HandshakeParser, buildAcceptResponse, buildRejectResponse, isWebSocketError, validateUpgradeRequest } from '../../lib';
import type { Message, UpgradeRequest } from '../../lib';
import { ACK, ignore, isSink, ready } from './control';
import { makeStages, wireStages } from './stage-pipeline';

/** Sink mode: every message becomes an empty binary message. */
function acker(): Transform {
  return new Transform({
    objectMode: true,
    transform(_message: Message, _enc: BufferEncoding, cb: (err?: Error | null, out?: Message) => void) {
      cb(null, { binary: true, data: ACK });
    },
  });
}

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', ignore);
  const handshake = new HandshakeParser({ role: 'server' });
  handshake.on('error', () => socket.destroy());
  socket.pipe(handshake);
  handshake.once('handshake', (req: UpgradeRequest) => {
    const info = validateUpgradeRequest(req);
    if (isWebSocketError(info)) {
      socket.end(buildRejectResponse(info.status ?? 400));
      return;
    }
    socket.write(buildAcceptResponse({ key: info.key }));
    wireStages(socket, handshake, makeStages(), isSink(req.url) ? acker() : null);
  });
});

server.listen(0, '127.0.0.1', () => ready((server.address() as net.AddressInfo).port));
