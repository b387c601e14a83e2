/**
 * The stream classes wspipe is built on: readable-stream's implementation, typed as Node's own
 * streams (`node:stream`).
 *
 * The implementation is readable-stream's so that behaviour does not change with the Node
 * version. The types are Node's so that (1) the published declarations need nothing but
 * @types/node, which a TypeScript project on Node has anyway, instead of @types/readable-stream,
 * which users would have to find and install; and (2) connections and stages type-check where
 * users put them: `stream.pipeline()`, `compose()`, a Node Readable's `pipe()`. readable-stream 4
 * is Node 18's streams module, and @types/readable-stream is itself written to be assignable to
 * these types, so nothing is claimed that the objects do not do.
 */
import type * as node from 'node:stream';
import * as rs from 'readable-stream';

export const Readable = rs.Readable as unknown as typeof node.Readable;
export type Readable = node.Readable;
export const Writable = rs.Writable as unknown as typeof node.Writable;
export type Writable = node.Writable;
export const Duplex = rs.Duplex as unknown as typeof node.Duplex;
export type Duplex = node.Duplex;
export const Transform = rs.Transform as unknown as typeof node.Transform;
export type Transform = node.Transform;
export type ReadableOptions = node.ReadableOptions;
export type WritableOptions = node.WritableOptions;
export type DuplexOptions = node.DuplexOptions;
export type TransformOptions = node.TransformOptions;
