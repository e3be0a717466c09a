/**
 * The noise dialect: Noise XX (handshake.ts) and its channel (channel.ts) as the chat
 * roles use them, both roles side by side.
 */
import * as Effect from "effect/Effect"
import type { HandshakeFrame } from "../../domain/Frames.ts"
import type { FrameChannel } from "../../transport/Transport.ts"
import type { IncomingSession, OutgoingSession, Reply } from "../Dialect.ts"
import { frameIO, type SecureChannel, type SessionError } from "./channel.ts"
import { FILE_PROTO } from "../../domain/FileWire.ts"
import { type AcceptOptions, acceptKeys, acceptTrusted, type InitiateOptions, initiateKeys, initiateTrusted } from "./handshake.ts"

export type { AcceptOptions, Completed } from "./handshake.ts"

const provenOf = (secure: SecureChannel) => ({
  username: secure.remoteUsername,
  key: secure.remoteKey,
  fingerprint: secure.remoteFingerprint
})

const outgoing = (secure: SecureChannel, label: string): OutgoingSession => {
  const replies: Effect.Effect<Reply, SessionError> = Effect.flatMap(secure.receive, (inner) =>
    inner.type === "ack"
      ? Effect.succeed(inner.refused === undefined ? { id: inner.id } : { id: inner.id, refused: inner.refused })
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
        ...(m.group === undefined ? {} : { group: m.group.state, ...(m.group.left ? { left: true as const } : {}) }),
        ...(m.file === undefined ? {} : { file: m.file })
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
    ack: (id, refused) => secure.send(refused === undefined ? { type: "ack", id } : { type: "ack", id, refused }),
    proven: provenOf(secure)
  }))

/**
 * A file session's handshake (protocol.md 9.2) on a dialed connection: proto and prologue
 * `p2pchat-file/1`, the same payloads and trust checks as a chat session's; gives the
 * proven peer and the transport keys for the binary stream that follows.
 */
export const initiateFile = (ch: FrameChannel, ownName: string, options: InitiateOptions) =>
  initiateKeys(frameIO(ch), ownName, { ...options, proto: FILE_PROTO })

/** Answers a file session's handshake whose first message is `first`. */
export const acceptFile = (ch: FrameChannel, first: HandshakeFrame, ownName: string, options: AcceptOptions) =>
  acceptKeys(frameIO(ch), first, ownName, { ...options, proto: FILE_PROTO })
