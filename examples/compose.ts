/**
 * The server pipeline built by hand with pipe(), stage by stage, onto a net.Socket, with a tap
 * that prints every frame between the FrameSplitter and the Unmasker. It echoes messages.
 *
 *   npx ts-node examples/compose.ts --port 8081
 *   npx ts-node examples/echo-client.ts ws://127.0.0.1:8081 hello
 *
 *   socket ─► HandshakeParser ─► FrameSplitter ─► [tap] ─► Unmasker ─► FragmentAssembler ─► ControlFrameResponder
 *                                                                                              │ messages   │ replies
 *                                                                                              ▼            │
 *   socket ◄─ FrameSerializer ◄──────────────── MessageFramer ◄──────────── echo ◄─────────────┘            │
 *                   ▲────────────────────────────────────────────────────────────────────────────────────────┘
 */
import * as net from 'node:net';
import { Transform } from 'readable-stream';
import {
  ControlFrameResponder,
  FragmentAssembler,
  Frame,
  FrameSerializer,
  FrameSplitter,
  HandshakeParser,
  Message,
  MessageFramer,
  Opcode,
  UpgradeRequest,
  Unmasker,
  WebSocketError,
  buildAcceptResponse,
  buildRejectResponse,
  isWebSocketError,
  validateUpgradeRequest,
} from '../lib';

const at = process.argv.indexOf('--port');
const port = at > 0 ? Number(process.argv[at + 1]) : 8081;

/** A tap: passes frames on unchanged and prints one line for each. */
function frameTap(label: string): Transform {
  return new Transform({
    objectMode: true,
    transform(frame: Frame, _enc: BufferEncoding, cb: (err: Error | null, value: unknown) => void) {
      const kind = Opcode[frame.opcode] ?? `0x${frame.opcode.toString(16)}`;
      console.log(`${label} ${kind} fin=${frame.fin} rsv1=${frame.rsv1} len=${frame.length} masked=${frame.mask !== null}`);
      cb(null, frame);
    },
  });
}

function handle(socket: net.Socket): void {
  const handshake = new HandshakeParser({ role: 'server' });
  const splitter = new FrameSplitter({ maxPayload: 16 * 1024 * 1024 });
  const tap = frameTap(`[${socket.remotePort}] frame:`);
  const unmasker = new Unmasker({ role: 'server' });
  const assembler = new FragmentAssembler();
  // 'manual': the peer's close is answered below, once the echoes of the messages it sent
  // before its close have gone into the serializer (RFC 6455 §5.5.1).
  const responder = new ControlFrameResponder({ closeAnswer: 'manual' });
  const echo = new Transform({
    objectMode: true,
    transform(message: Message, _enc: BufferEncoding, cb: (err: Error | null, value: unknown) => void) {
      cb(null, message); // a Message ({ binary, data }) is what MessageFramer takes
    },
  });
  const framer = new MessageFramer();
  const serializer = new FrameSerializer();

  handshake.once('handshake', (req: UpgradeRequest) => {
    const info = validateUpgradeRequest(req);
    if (isWebSocketError(info)) {
      socket.end(buildRejectResponse(info.status ?? 400, { message: info.message }));
      return;
    }
    socket.write(buildAcceptResponse({ key: info.key }));
  });
  responder.on('ping', (payload: Buffer) => console.log(`[${socket.remotePort}] ping ${payload.length} bytes (pong sent)`));
  responder.on('peerclose', (code: number, reason: string) => console.log(`[${socket.remotePort}] close ${code} ${reason}`));

  // Inbound chain.
  socket.pipe(handshake).pipe(splitter).pipe(tap).pipe(unmasker).pipe(assembler).pipe(responder).pipe(echo);
  // Outbound chain: two sources of frames (messages and automatic replies) into one serializer,
  // each frame whole; it ends when both have ended. The framer ends after the peer's close, once
  // it has handed on its last echo: then the close is answered, and replies end with it.
  echo.pipe(framer).pipe(serializer, { end: false });
  responder.replies.pipe(serializer, { end: false });
  framer.once('end', () => responder.answerClose());
  let sourcesLeft = 2;
  const sourceEnded = (): void => {
    if (--sourcesLeft === 0) serializer.end();
  };
  framer.once('end', sourceEnded);
  responder.replies.once('end', sourceEnded);
  serializer.pipe(socket);

  // pipe() does not forward errors: a stage that fails turns into a close frame with its code
  // (RFC 6455 §7.1.7), then the outbound side ends and the socket with it.
  const fail = (err: Error): void => {
    const wsErr = isWebSocketError(err) ? err : new WebSocketError('WS_ERR_CONNECTION_LOST', err.message);
    console.log(`[${socket.remotePort}] failing: ${wsErr.code} -> close ${wsErr.closeCode}`);
    socket.unpipe(handshake);
    responder.failConnection(wsErr);
    echo.end();
  };
  for (const stage of [handshake, splitter, tap, unmasker, assembler, responder]) stage.on('error', fail);
  socket.on('error', () => socket.destroy());
}

const server = net.createServer(handle);
server.listen(port, '127.0.0.1', () => {
  console.log(`composed echo server on ws://127.0.0.1:${port}`);
  console.log(`try: npx ts-node examples/echo-client.ts ws://127.0.0.1:${port} hello`);
});
process.on('SIGINT', () => server.close(() => process.exit(0)));
