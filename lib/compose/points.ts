/**
 * The names of a composed pipeline: its points (where streams are inserted and taps observe)
 * and its replaceable stages, with the check of the options that use them. An option the
 * pipeline cannot use is the application's mistake: it throws at the call, with a code.
 */
import { WebSocketError } from '../protocol/errors';

/** The points of a composed pipeline, inbound then outbound (see lib/compose/pipeline.ts). */
export const PIPELINE_POINTS = [
  'afterHandshake',
  'afterSplitter',
  'afterUnmasker',
  'afterInflater',
  'afterAssembler',
  'afterResponder',
  'afterFramer',
  'afterDeflater',
  'afterMasker',
  'afterSerializer',
] as const;

/** A point of a composed pipeline: what passes right after the named stage. */
export type PipelinePoint = (typeof PIPELINE_POINTS)[number];

/**
 * The stages a stream of one's own may replace. The HandshakeParser and the ControlFrameResponder
 * may not: the pipeline's opening and closing handshakes are theirs.
 */
export const REPLACEABLE_STAGES = ['splitter', 'unmasker', 'inflater', 'assembler', 'framer', 'deflater', 'masker', 'serializer'] as const;

export type ReplaceableStage = (typeof REPLACEABLE_STAGES)[number];

function invalid(detail: string): WebSocketError {
  return new WebSocketError('WS_ERR_INVALID_ARGUMENT', detail);
}

function isStream(value: unknown): boolean {
  const s = value as { pipe?: unknown; write?: unknown; on?: unknown } | null;
  return typeof s === 'object' && s !== null && typeof s.pipe === 'function' && typeof s.write === 'function' && typeof s.on === 'function';
}

/** Throws WS_ERR_INVALID_ARGUMENT for options composePipeline cannot use. */
export function checkPipelineOptions(options: unknown): void {
  if (typeof options !== 'object' || options === null) throw invalid('the options must be an object');
  const { role, insert, replace } = options as { role?: unknown; insert?: unknown; replace?: unknown };
  if (role !== 'server' && role !== 'client') throw invalid(`role must be 'server' or 'client', not ${JSON.stringify(role)}`);
  if (insert !== undefined) {
    if (typeof insert !== 'object' || insert === null) throw invalid('insert must be an object of points');
    for (const [point, value] of Object.entries(insert)) {
      if (!(PIPELINE_POINTS as readonly string[]).includes(point)) throw invalid(`unknown pipeline point ${JSON.stringify(point)} (one of ${PIPELINE_POINTS.join(', ')})`);
      const list: unknown[] = Array.isArray(value) ? value : [value];
      if (!list.every(isStream)) throw invalid(`insert.${point} must be a stream or an array of streams`);
    }
  }
  if (replace !== undefined) {
    if (typeof replace !== 'object' || replace === null) throw invalid('replace must be an object of stages');
    for (const [name, value] of Object.entries(replace)) {
      if (!(REPLACEABLE_STAGES as readonly string[]).includes(name)) throw invalid(`no replaceable stage ${JSON.stringify(name)} (one of ${REPLACEABLE_STAGES.join(', ')})`);
      if (!isStream(value)) throw invalid(`replace.${name} must be a stream`);
    }
  }
}
