/**
 * What the plain and classic dialects share on an outgoing connection: writing a frame,
 * reading the peer's acks, and pacing writes to a classic peer.
 */
import * as Effect from "effect/Effect"
import type { FrameChannel } from "../transport/Transport.ts"
import type { Reply } from "./Dialect.ts"
import { frameIO, type SessionError } from "./noise/channel.ts"

/** Writes one frame; a connection that ends under it is a SessionError with the TransportError as cause. */
export const writeFrame = (ch: FrameChannel, frame: object) => frameIO(ch).write(frame)

/**
 * The peer's next ack on an outgoing connection. A key answer goes to `onKey` (the classic
 * key exchange waits for it); anything else a responder should not send is skipped.
 */
export const nextAck = (ch: FrameChannel, onKey: (key: number) => void): Effect.Effect<Reply, SessionError> => {
  const io = frameIO(ch)
  const loop: Effect.Effect<Reply, SessionError> = Effect.flatMap(io.read, (frame) => {
    switch (frame._tag) {
      case "Ack":
        // a plain ack says only "stored": refusals are said in secure sessions
        return Effect.succeed({ id: frame.frame.ack })
      case "Key":
        onKey(frame.frame.key)
        return loop
      default:
        return Effect.andThen(Effect.logDebug(`initiator: ignored a ${frame._tag} frame from ${ch.label}`), loop)
    }
  })
  return loop
}

/** Writes through `pace`: a classic peer reads one frame per read, so writes to it are spaced. */
export type Pace = <A, E>(write: Effect.Effect<A, E>) => Effect.Effect<A, E>
