/**
 * Plain p2pchat (protocol: "p2pchat/1 additions"): the classic plain frame with the
 * message's `id` and the sender's `from`, acked by `{"ack": id}` once stored.
 *
 *   initiator  one frame per message; the reader routes acks by id
 *   responder  classicPlain.received reads the frame, id and from included; the
 *              responder acks through the session (legacy.accept)
 */
import { encodePlainText } from "../domain/Frames.ts"
import type { FrameChannel } from "../transport/Transport.ts"
import type { OutgoingSession } from "./Dialect.ts"
import { nextAck, writeFrame } from "./wire.ts"

export const initiate = (ch: FrameChannel, from: string | undefined): OutgoingSession => ({
  mode: "plain",
  acked: true,
  send: (m) =>
    writeFrame(ch, { unencrypted_message: encodePlainText(m.text), id: m.id, ...(from !== undefined ? { from } : {}) }),
  replies: nextAck(ch, () => {})
})
