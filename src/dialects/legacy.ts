/**
 * The responder's session on a connection that did not open with a secure handshake: the
 * classic program mixes plain, key and encrypted frames on one connection, so the classic
 * plain and classic 3DES dialects (and the p2pchat fields of plain) are served together.
 */
import * as Effect from "effect/Effect"
import type { Frame } from "../domain/Frames.ts"
import type { FrameChannel } from "../transport/Transport.ts"
import * as Classic3des from "./classic3des.ts"
import * as ClassicPlain from "./classicPlain.ts"
import type { IncomingSession, Received } from "./Dialect.ts"
import { fail, frameIO, type SessionError } from "./noise/channel.ts"

/**
 * The responder's session on a connection whose first frame is `first` and not a
 * handshake: plain frames (with or without the p2pchat id and from), classic key exchanges
 * (the key lives as long as the connection; a new `key` frame replaces it) and 3DES
 * messages under the current key.
 */
export const accept = (ch: FrameChannel, first: Frame): IncomingSession => {
  let key24: Buffer | undefined
  let pending: Frame | undefined = first
  const io = frameIO(ch)

  const handle = (frame: Frame): Effect.Effect<Received | undefined, SessionError> => {
    switch (frame._tag) {
      case "Plain":
        return Effect.succeed(ClassicPlain.received(frame.frame))
      case "Key": {
        const answer = Classic3des.answerKey(frame.frame.key)
        key24 = answer.key24
        // One small write: the classic peer reads its answer with a single recv.
        return Effect.as(io.write({ key: answer.own }), undefined)
      }
      case "Encrypted":
        return Classic3des.received(key24, frame.frame)
      case "Handshake":
        return fail("Unexpected", "a secure handshake must be the first frame of a connection")
      case "Ack":
      case "Cipher":
      case "Error":
        return fail("Unexpected", `unexpected ${({ Ack: "ack", Cipher: "ct", Error: "error" })[frame._tag]} frame from an initiator`)
    }
  }

  const receive: Effect.Effect<Received, SessionError> = Effect.suspend(() => {
    const frame = pending
    pending = undefined
    const next = frame !== undefined ? Effect.succeed(frame) : io.read
    return Effect.flatMap(next, handle).pipe(Effect.flatMap((r) => r === undefined ? receive : Effect.succeed(r)))
  })

  return { receive, ack: (id) => io.write({ ack: id }) }
}

