/**
 * diagnostics_channel names of fan-out (node:diagnostics_channel). Messages are published only
 * while someone subscribes to the channel, so an unobserved server pays one check per event.
 *
 * - `wspipe:fanout:publish`  { topic, bytes, subscribers, encodings, remote }: a message was
 *   offered to this process's subscribers (`remote`: it came through the adapter).
 * - `wspipe:fanout:discard`  { topic, what: 'dropped' | 'evicted' | 'coalesced', bytes, ws }:
 *   a subscriber's queue discarded a message.
 * - `wspipe:fanout:overflow` { topic, ws }: a 'close' subscription fell behind; the connection is
 *   being closed with 1013.
 * - `wspipe:fanout:lost`     { origin, topic, count }: messages of another node that never
 *   arrived (a gap in its sequence numbers for that topic).
 * - `wspipe:fanout:adapter`  { event: 'down' | 'up' | 'error', error? }: the adapter lost or
 *   regained its broker.
 */
import diagnostics from 'node:diagnostics_channel';

export const FanoutChannels = {
  publish: diagnostics.channel('wspipe:fanout:publish'),
  discard: diagnostics.channel('wspipe:fanout:discard'),
  overflow: diagnostics.channel('wspipe:fanout:overflow'),
  lost: diagnostics.channel('wspipe:fanout:lost'),
  adapter: diagnostics.channel('wspipe:fanout:adapter'),
} as const;
