/**
 * The one error of the receiving side (Responder, Limits): how a connection ended, with
 * what lay under it kept as the cause.
 */
import * as Data from "effect/Data"
import type { SessionError, SessionErrorReason } from "../dialects/noise/channel.ts"
import { transportCause } from "../dialects/noise/channel.ts"
import type { TransportErrorReason } from "../transport/Transport.ts"

/** Why a connection ended, as the stats count it. */
export type EndReason =
  | TransportErrorReason
  | "Unexpected" // a valid frame that makes no sense here (an ack sent to a responder...)
  | "NoKey" // classic encrypted_message before any key exchange
  | "DecryptFailed" // ciphertext that does not decrypt
  | "Unsupported" // a secure session this node cannot serve
  | "Handshake" // a secure handshake that failed
  | "KeyChanged" // a secure peer whose key differs from the one pinned for its name
  | "Timeout" // a limit: no first frame (or handshake) in time, or an idle session

export class ConnectionEnded extends Data.TaggedError("ConnectionEnded")<{
  readonly reason: EndReason
  readonly message: string
  readonly cause?: unknown
}> {}

/** Reasons that mean the peer sent something wrong (counted and logged as warnings). */
export const isBadInput = (reason: EndReason): boolean => reason !== "Closed" && reason !== "Io" && reason !== "Timeout"

const SESSION_END: Record<SessionErrorReason, EndReason> = {
  Handshake: "Handshake",
  Decrypt: "DecryptFailed",
  Protocol: "Unexpected",
  KeyChanged: "KeyChanged",
  PeerRefused: "Unexpected",
  Closed: "Closed",
  NoKey: "NoKey",
  Unexpected: "Unexpected",
  Timeout: "Timeout"
}

/** A session's failure as the end of its connection: the network's reason where it ended it. */
export const endOf = (e: SessionError): ConnectionEnded => {
  const t = transportCause(e)
  return new ConnectionEnded({ reason: t?.reason ?? SESSION_END[e.reason], message: t?.message ?? e.message, cause: e })
}
