/**
 * Our stages composed by hand with pipe(), no WebSocket class:
 *
 *   socket > HandshakeParser > FrameSplitter > Unmasker > FragmentAssembler > ControlFrameResponder
 *     > (echo: messages as they are | sink: an empty message each) > MessageFramer > FrameSerializer > socket
 *   ControlFrameResponder.replies > FrameSerializer (pongs, close echo)
 *
 * The handshake is answered with validateUpgradeRequest + buildAcceptResponse.
 */
import * as net from 'node:net';
import { Transform } from 'readable-stream';
import {
  ControlFrameResponder,
  FragmentAssembler,
  FrameSerializer,
  FrameSplitter,
  HandshakeParser,
  MessageFramer,
  Unmasker,
  buildAcceptResponse,
  buildRejectResponse,
  isWebSocketError,
  validateUpgradeRequest,
} from '../../lib';
import type { Message, UpgradeRequest } from '../../lib';
import { ACK, MAX_MESSAGE, ignore, isSink, ready } from './control';

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
    const splitter = new FrameSplitter({ maxPayload: MAX_MESSAGE });
    const unmasker = new Unmasker({ role: 'server' });
    const assembler = new FragmentAssembler({ maxMessageSize: MAX_MESSAGE });
    const responder = new ControlFrameResponder();
    const framer = new MessageFramer();
    const serializer = new FrameSerializer();
    const stages = [handshake, splitter, unmasker, assembler, responder, framer, serializer];
    const destroyAll = (): void => {
      for (const stage of stages) stage.destroy();
      socket.destroy();
    };
    for (const stage of stages) stage.on('error', destroyAll);
    socket.on('close', destroyAll);
    handshake.pipe(splitter).pipe(unmasker).pipe(assembler).pipe(responder);
    if (isSink(req.url)) responder.pipe(acker()).pipe(framer);
    else responder.pipe(framer);
    responder.replies.pipe(serializer, { end: false });
    framer.pipe(serializer).pipe(socket);
  });
});

server.listen(0, '127.0.0.1', () => ready((server.address() as net.AddressInfo).port));
