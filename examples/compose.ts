/**
 * A WebSocket echo server built from its stages with composePipeline() (lib/compose/pipeline.ts),
 * with a stage of our own between the FrameSplitter and the Unmasker that prints every frame.
 *
 *   npx ts-node examples/compose.ts --port 8081
 *   npx ts-node examples/echo-client.ts ws://127.0.0.1:8081 hello
 *
 *   socket ─► HandshakeParser ─► FrameSplitter ─► [printFrames] ─► Unmasker ─► FragmentAssembler ─► ControlFrameResponder ─► echo
 *   socket ◄─ FrameSerializer ◄─ (replies: pong, close) ◄────────── MessageFramer ◄───────────────────────────────────────────┘
 */
import * as net from 'node:net';
import { Transform } from 'readable-stream';
import { Frame, Message, Opcode } from '../lib';
import { composePipeline } from '../lib/compose/pipeline';

const at = process.argv.indexOf('--port');
const port = at > 0 ? Number(process.argv[at + 1]) : 8081;

/** Our own stage: passes frames on unchanged and prints one line for each. */
function printFrames(label: string): Transform {
  return new Transform({
    objectMode: true,
    transform(frame: Frame, _enc, cb) {
      const kind = Opcode[frame.opcode] ?? `0x${frame.opcode.toString(16)}`;
      console.log(`${label} ${kind} fin=${frame.fin} rsv1=${frame.rsv1} len=${frame.length} masked=${frame.mask !== null}`);
      cb(null, frame);
    },
  });
}

const server = net.createServer((socket) => {
  const who = `[${socket.remotePort}]`;
  const ws = composePipeline(socket, { role: 'server', maxPayload: 16 * 1024 * 1024, insert: { afterSplitter: printFrames(`${who} frame:`) } });
  ws.on('data', (message: Message) => ws.write(message)); // the echo
  ws.on('ping', (payload: Buffer) => console.log(`${who} ping ${payload.length} bytes (pong sent)`));
  ws.on('error', (err: Error & { code?: string }) => console.log(`${who} failing: ${err.code ?? err.message}`));
  ws.on('close', (code: number, reason: string) => console.log(`${who} close ${code} ${reason}`));
});
server.listen(port, '127.0.0.1', () => {
  console.log(`composed echo server on ws://127.0.0.1:${port}`);
  console.log(`try: npx ts-node examples/echo-client.ts ws://127.0.0.1:${port} hello`);
});
process.on('SIGINT', () => server.close(() => process.exit(0)));
