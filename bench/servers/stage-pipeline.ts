/**
 * The hand-composed pipeline after the handshake, as bench/servers/stages.ts runs it and
 * bench/lifecycle.ts and bench/chain.ts measure it (all three import it: the figures are of the
 * same composition):
 *
 *   socket > HandshakeParser > FrameSplitter > Unmasker > FragmentAssembler > ControlFrameResponder
 *     > (sink, when given) > MessageFramer > FrameSerializer > socket
 *   ControlFrameResponder.replies > FrameSerializer (pongs, close echo)
 *
 * Every stage is destroyed with the socket, and the socket with any stage that fails.
 */
import type { Duplex } from 'node:stream';
import type { Transform } from 'readable-stream';
import {
  ControlFrameResponder,
  FragmentAssembler,
  FrameSerializer,
  FrameSplitter,
  HandshakeParser,
  MessageFramer,
  Unmasker,
} from '../../lib';
import { MAX_MESSAGE } from './control';

/** The stages that follow the HandshakeParser. */
export interface Stages {
  splitter: FrameSplitter;
  unmasker: Unmasker;
  assembler: FragmentAssembler;
  responder: ControlFrameResponder;
  framer: MessageFramer;
  serializer: FrameSerializer;
}

/** Makes the stages (constructors only). */
export function makeStages(): Stages {
  return {
    splitter: new FrameSplitter({ maxPayload: MAX_MESSAGE }),
    unmasker: new Unmasker({ role: 'server' }),
    assembler: new FragmentAssembler({ maxMessageSize: MAX_MESSAGE }),
    responder: new ControlFrameResponder(),
    framer: new MessageFramer(),
    serializer: new FrameSerializer(),
  };
}

/**
 * Pipes `handshake` (already fed by `socket`) through `stages` and back onto `socket`, with
 * `sink` (an object-mode Transform from messages to messages) between the responder and the
 * framer when given, and ties the stages' ends to the socket's.
 */
export function wireStages(socket: Duplex, handshake: HandshakeParser, stages: Stages, sink: Transform | null): void {
  const { splitter, unmasker, assembler, responder, framer, serializer } = stages;
  const all = [handshake, splitter, unmasker, assembler, responder, framer, serializer];
  const destroyAll = (): void => {
    for (const stage of all) stage.destroy();
    socket.destroy();
  };
  for (const stage of all) stage.on('error', destroyAll);
  socket.on('close', destroyAll);
  handshake.pipe(splitter).pipe(unmasker).pipe(assembler).pipe(responder);
  if (sink !== null) responder.pipe(sink).pipe(framer);
  else responder.pipe(framer);
  responder.replies.pipe(serializer, { end: false });
  framer.pipe(serializer).pipe(socket);
}
