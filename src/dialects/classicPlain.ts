/**
 * Classic plain (protocol: "Classic frames"): `{"unencrypted_message": base64 of UTF-8}`.
 *
 *   initiator  to a classic peer: a long text is split into parts that each fit the
 *              peer's single 1024-byte read, one frame per part, paced; no id, no ack
 *   responder  the frame, with the p2pchat fields `id` and `from` when a p2pchat node sent it
 */
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import { splitForClassic } from "../domain/Classic.ts"
import { encodePlainText, type PlainFrame, plainText } from "../domain/Frames.ts"
import type { FrameChannel } from "../transport/Transport.ts"
import type { OutgoingSession, Received } from "./Dialect.ts"
import { nextAck, type Pace, writeFrame } from "./wire.ts"

export const initiate = (ch: FrameChannel, pace: Pace): OutgoingSession => ({
  mode: "plain",
  acked: false,
  send: (m) =>
    Effect.forEach(splitForClassic(m.text, false), (part) => pace(writeFrame(ch, { unencrypted_message: encodePlainText(part) })), {
      discard: true
    }),
  // A classic peer never acks: this only notices the end of the connection.
  replies: nextAck(ch, () => {})
})

/** A plain frame as a received message; one without an id gets one here and reads no ack. */
export const received = (frame: PlainFrame): Received => ({
  inner: { type: "msg", id: frame.id ?? randomUUID(), text: plainText(frame.unencrypted_message), sentAt: "" },
  mode: "plain",
  claimedFrom: frame.from,
  wantsAck: frame.id !== undefined
})
