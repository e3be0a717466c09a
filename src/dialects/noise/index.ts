/**
 * The noise dialect: Noise XX (handshake.ts) and its channel (channel.ts) as the chat
 * roles use them, both roles side by side.
 */
import * as Effect from "effect/Effect"
import type { HandshakeFrame } from "../../domain/Frames.ts"
import type { FrameChannel } from "../../transport/Transport.ts"
import type { IncomingSession, OutgoingSession } from "../Dialect.ts"
import { frameIO, type SecureChannel, type SessionError } from "./channel.ts"
import { type AcceptOptions, acceptTrusted, type InitiateOptions, initiateTrusted } from "./handshake.ts"

const provenOf = (secure: SecureChannel) => ({
  username: secure.remoteUsername,
  key: secure.remoteKey,
  fingerprint: secure.remoteFingerprint
})

const outgoing = (secure: SecureChannel, label: string): OutgoingSession => {
  const replies: Effect.Effect<string, SessionError> = Effect.flatMap(secure.receive, (inner) =>
    inner.type === "ack"
      ? Effect.succeed(inner.id)
      : Effect.andThen(Effect.logDebug(`initiator: ignored a secure ${inner.type} from ${label} on an outgoing link`), replies))
  return {
    mode: "noise",
    acked: true,
    send: (m) =>
      secure.send({
        type: "msg",
        id: m.id,
        text: m.text,
        sentAt: m.sentAt,
        ...(m.to === undefined ? {} : { to: m.to }),
        ...(m.group === undefined ? {} : { group: m.group.state, ...(m.group.left ? { left: true as const } : {}) })
      }),
    replies,
    proven: provenOf(secure)
  }
}

/** Runs the handshake as `ownName` on a dialed connection, with the Trust service's check. */
export const initiate = (ch: FrameChannel, ownName: string, options: InitiateOptions) =>
  Effect.map(initiateTrusted(frameIO(ch), ownName, options), (secure) => outgoing(secure, ch.label))

/** Answers a handshake whose first message is `first`, with the Trust service's check. */
export const accept = (ch: FrameChannel, first: HandshakeFrame, ownName: string, options: AcceptOptions) =>
  Effect.map(acceptTrusted(frameIO(ch), first, ownName, options), (secure): IncomingSession => ({
    receive: Effect.map(secure.receive, (inner) => ({ inner, mode: "noise" as const, wantsAck: true })),
    ack: (id) => secure.send({ type: "ack", id }),
    proven: provenOf(secure)
  }))
