/**
 * The p2pchat/1 secure channel (protocol: "Secure session"): after the Noise XX handshake
 * (handshake.ts), one inner JSON object per `{"ct": base64}` frame, both ways.
 *
 * Any failure ends the channel: one that failed to open a frame (or to send one) refuses
 * every later call, so nothing from a session that was tampered with is ever shown or
 * stored after the failure.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import * as Semaphore from "effect/Semaphore"
import { fingerprint } from "../../domain/Fingerprint.ts"
import { decodeInner, type Frame, type Inner, type RefusalCode } from "../../domain/Frames.ts"
import { MAX_FRAME_BYTES } from "../../domain/Framing.ts"
import { MAX_MESSAGE_LENGTH, MAX_PLAINTEXT_LENGTH, NoiseError, type Transport } from "../../domain/Noise.ts"
import type { FrameChannel, TransportError } from "../../transport/Transport.ts"
import type { Authenticated } from "../../trust/Trust.ts"

// ---------------------------------------------------------------------------------------------
// Types

/**
 * How a session reads and writes frames; `frameIO` gives it over a transport's
 * FrameChannel. `write` takes the frame object (the provider encodes it, compact plus `\n`);
 * `read` gives the next decoded frame. A closed or broken connection is a SessionError
 * (reason "Closed" or "Protocol") from `read`/`write`.
 */
export interface FrameIO {
  readonly write: (frame: object) => Effect.Effect<void, SessionError>
  readonly read: Effect.Effect<Frame, SessionError>
}

/**
 * The one error of the dialects. Handshake, Decrypt, Protocol, KeyChanged, PeerRefused (the
 * peer said why it refuses the session: an error frame) and Closed are the secure session's; NoKey (classic ciphertext before any key exchange), Unexpected (a valid
 * frame that makes no sense where it came) and Timeout (no answer where one was due) the
 * classic dialects'.
 */
export type SessionErrorReason =
  | "Handshake"
  | "Decrypt"
  | "Protocol"
  | "KeyChanged"
  | "PeerRefused"
  | "Closed"
  | "NoKey"
  | "Unexpected"
  | "Timeout"

/**
 * Why a session failed. `cause` keeps what lay under it: the TransportError when the
 * connection ended under the session (see `transportCause`).
 */
export class SessionError extends Data.TaggedError("SessionError")<{
  readonly reason: SessionErrorReason
  readonly message: string
  /** KeyChanged only: the username (as the peer spelled it) and the key it presented, for `trust USER`. */
  readonly username?: string
  readonly presentedKey?: Uint8Array
  /** PeerRefused only: the refusal code of the peer's error frame. */
  readonly refusal?: RefusalCode
  readonly cause?: unknown
}> {}

/** The connection's end behind a SessionError, if the network (not the session) ended it. */
export const transportCause = (e: SessionError): TransportError | undefined =>
  typeof e.cause === "object" && e.cause !== null && (e.cause as { _tag?: unknown })._tag === "TransportError"
    ? e.cause as TransportError
    : undefined

/**
 * A session's view of a connection. A connection that ends under the session is a
 * SessionError ("Closed" for a clean hang-up between frames, "Protocol" otherwise) whose
 * cause is the TransportError.
 */
export const frameIO = (ch: FrameChannel): FrameIO => {
  const wrap = (e: TransportError) =>
    new SessionError({ reason: e.reason === "Closed" ? "Closed" : "Protocol", message: e.message, cause: e })
  return { write: (frame) => Effect.mapError(ch.send(frame), wrap), read: Effect.mapError(ch.next, wrap) }
}

export interface SecureChannel {
  /** The username from the peer's handshake payload, as the peer spelled it. */
  readonly remoteUsername: string
  /** The peer's static public key, proven by the handshake. */
  readonly remoteKey: Uint8Array
  readonly remoteFingerprint: string
  /**
   * Encrypts one inner object and writes `{"ct": base64}`. Sends are serialised (nonce order
   * is write order). An inner object too large for one frame is refused before anything is
   * encrypted and the channel stays usable; any other failure ends the channel.
   */
  readonly send: (inner: Inner) => Effect.Effect<void, SessionError>
  /**
   * Opens a `{"ct"}` frame into its inner object. Any failure (not a Cipher frame, bad
   * base64, decryption fails, bad inner JSON) ends the channel: every later call fails.
   */
  readonly open: (frame: Frame) => Effect.Effect<Inner, SessionError>
  /** Reads the next frame from the FrameIO and opens it. */
  readonly receive: Effect.Effect<Inner, SessionError>
  /** False once the channel has failed; `send`/`open`/`receive` then fail with reason "Closed". */
  readonly isOpen: Effect.Effect<boolean>
}

export const HANDSHAKE_TIMEOUT = "10 seconds"

/** `{"ct":""}`: the bytes of a cipher frame around its base64 text. */
const CT_FRAME_OVERHEAD = 9
/**
 * Largest UTF-8 inner object that `send` accepts: its ciphertext (plus the 16-byte tag),
 * in base64, must fit one frame of MAX_FRAME_BYTES, so the peer's splitter accepts it.
 */
export const MAX_INNER_BYTES: number = Math.min(
  Math.floor((MAX_FRAME_BYTES - CT_FRAME_OVERHEAD) / 4) * 3 - 16,
  MAX_PLAINTEXT_LENGTH
)
/** Longest base64 text of a Noise message (65535 bytes). */
const MAX_BASE64_CHARS = 4 * Math.ceil(MAX_MESSAGE_LENGTH / 3)

// ---------------------------------------------------------------------------------------------
// Encoding helpers

const utf8 = new TextEncoder()
const utf8Strict = new TextDecoder("utf-8", { fatal: true })

export const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")

/** Standard padded base64 only, canonical, and at most one Noise message long. */
export const fromBase64 = (text: string, what: string): Result.Result<Uint8Array, string> => {
  if (text.length > MAX_BASE64_CHARS) {
    return Result.fail(`${what} is longer than the Noise limit of ${MAX_MESSAGE_LENGTH} bytes`)
  }
  const bytes = Buffer.from(text, "base64")
  // Node's decoder skips what it does not understand; the round trip catches all of it.
  if (bytes.toString("base64") !== text) return Result.fail(`${what} is not canonical standard base64`)
  return Result.succeed(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
}

export const frameName = (frame: Frame): string => {
  switch (frame._tag) {
    case "Handshake":
      return "handshake (hs)"
    case "Cipher":
      return "encrypted (ct)"
    case "Plain":
      return "classic unencrypted_message"
    case "Encrypted":
      return "classic encrypted_message"
    case "Key":
      return "classic key"
    case "Ack":
      return "classic ack"
    case "Error":
      return "error"
  }
}

export const fail = (reason: SessionErrorReason, message: string) => Effect.fail(new SessionError({ reason, message }))

export const explainNoise = (e: unknown): string => {
  if (e instanceof NoiseError) {
    switch (e.code) {
      case "DecryptFailed":
        return "it does not authenticate (altered in transit, or someone in the middle)"
      case "DhFailed":
        return "the peer sent an invalid key"
      default:
        return e.message
    }
  }
  return e instanceof Error ? e.message : String(e)
}

// ---------------------------------------------------------------------------------------------
// The channel

/** What a peer's refusal code means, from this node's side. */
export const refusalText = (code: RefusalCode): string => {
  switch (code) {
    case "key-changed":
      return "the peer refused the session: it has pinned another key for this node's name"
  }
}

/** Decrypts a `{"ct"}` frame into its inner object, or says why it cannot be accepted. */
const openFrame = (
  transport: Transport,
  frame: Frame
): Result.Result<Inner, { readonly reason: SessionErrorReason; readonly message: string; readonly refusal?: RefusalCode }> => {
  if (frame._tag === "Error") {
    return Result.fail({ reason: "PeerRefused", message: refusalText(frame.frame.error), refusal: frame.frame.error })
  }
  if (frame._tag !== "Cipher") {
    return Result.fail({ reason: "Protocol", message: `expected an encrypted (ct) frame, got a ${frameName(frame)} frame` })
  }
  const bytes = fromBase64(frame.frame.ct, "ciphertext")
  if (Result.isFailure(bytes)) return Result.fail({ reason: "Protocol", message: bytes.failure })
  let plaintext: Uint8Array
  try {
    plaintext = transport.decrypt(bytes.success)
  } catch (e) {
    return Result.fail({
      reason: "Decrypt",
      message: e instanceof NoiseError && (e.code === "DecryptFailed" || e.code === "InvalidLength")
        ? "a frame failed to decrypt (altered, replayed, reordered or truncated in transit); nothing from it was accepted"
        : `a frame failed to decrypt: ${explainNoise(e)}`
    })
  }
  let text: string
  try {
    text = utf8Strict.decode(plaintext)
  } catch {
    return Result.fail({ reason: "Protocol", message: "the decrypted frame is not UTF-8" })
  }
  const inner = decodeInner(text)
  return Result.isSuccess(inner) ? Result.succeed(inner.success) : Result.fail({ reason: "Protocol", message: inner.failure })
}

export const makeChannel = (io: FrameIO, transport: Transport, peer: Authenticated): SecureChannel => {
  /** Why the channel ended; undefined while it is open. */
  let endedBecause: string | undefined = undefined
  const sendLock = Semaphore.makeUnsafe(1)

  const end = (e: SessionError): SessionError => {
    endedBecause ??= e.message
    return e
  }
  const endWith = (reason: SessionErrorReason, message: string, refusal?: RefusalCode) =>
    Effect.fail(end(
      new SessionError({
        reason,
        message: `secure session with ${peer.username} ended: ${message}`,
        ...(refusal === undefined ? {} : { refusal })
      })
    ))
  const closed = () =>
    Effect.fail(
      new SessionError({ reason: "Closed", message: `the secure session with ${peer.username} has ended (${endedBecause})` })
    )

  const send = (inner: Inner): Effect.Effect<void, SessionError> =>
    sendLock.withPermit(Effect.suspend(() => {
      if (endedBecause !== undefined) return closed()
      const plaintext = utf8.encode(JSON.stringify(inner))
      if (plaintext.byteLength > MAX_INNER_BYTES) {
        return fail("Protocol", `message too large for one secure frame (${plaintext.byteLength} bytes, at most ${MAX_INNER_BYTES})`)
      }
      let ciphertext: Uint8Array
      try {
        ciphertext = transport.encrypt(plaintext)
      } catch (e) {
        return endWith("Protocol", `cannot encrypt: ${explainNoise(e)}`)
      }
      // The nonce is spent: unless this frame is surely written, the peer's next frame
      // would be out of step, so the channel ends (an interrupted write included).
      return io.write({ ct: toBase64(ciphertext) }).pipe(
        Effect.mapError(end),
        Effect.onExit((exit) =>
          Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => {
            endedBecause ??= "a frame could not be written"
          })
        )
      )
    }))

  const open = (frame: Frame): Effect.Effect<Inner, SessionError> =>
    Effect.suspend(() => {
      if (endedBecause !== undefined) return closed()
      const inner = openFrame(transport, frame)
      return Result.isSuccess(inner)
        ? Effect.succeed(inner.success)
        : endWith(inner.failure.reason, inner.failure.message, inner.failure.refusal)
    })

  const receive: Effect.Effect<Inner, SessionError> = Effect.suspend(() =>
    endedBecause !== undefined ? closed() : Effect.flatMap(Effect.mapError(io.read, end), open)
  )

  return {
    remoteUsername: peer.username,
    remoteKey: peer.key,
    remoteFingerprint: fingerprint(peer.key),
    send,
    open,
    receive,
    isOpen: Effect.sync(() => endedBecause === undefined)
  }
}
