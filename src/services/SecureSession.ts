/**
 * The p2pchat/1 secure session (PROTOCOL.md "Secure session" and "Trust"), independent of
 * sockets: the Responder and Initiator hand it a FrameIO over their connection.
 *
 *   -> {"proto": "p2pchat/1", "hs": m1}     e                 (empty payload)
 *   <- {"hs": m2}                           e, ee, s, es      payload {"username": responder}
 *   -> {"hs": m3}                           s, se             payload {"username": initiator}
 *   <> {"ct": ...}                          transport messages, one inner JSON object each
 *
 * Any failure ends the session: a handshake is never resumed, and a channel that failed to
 * open one frame (or to send one) refuses every later call, so nothing from a session that
 * was tampered with is ever shown or stored after the failure.
 *
 * Use `initiateTrusted` / `acceptTrusted`: they run the trust-on-first-use check, so a
 * caller cannot forget it. `initiate` / `accept` are the bare handshakes.
 */
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Semaphore from "effect/Semaphore"
import { fingerprint } from "../domain/Fingerprint.ts"
import { decodeInner, type Frame, type HandshakeFrame, HandshakePayload, type Inner } from "../domain/Frames.ts"
import { MAX_FRAME_BYTES } from "../domain/Framing.ts"
import { type Handshake, MAX_MESSAGE_LENGTH, MAX_PLAINTEXT_LENGTH, NoiseError, type Transport } from "../domain/Noise.ts"
import { oneLine, PROTO, usernameKey } from "../domain/Presence.ts"
import { Crypto, idToKey, keyId } from "./Crypto.ts"
import { History, type HistoryError } from "./History.ts"
import { PeerRegistry } from "./PeerRegistry.ts"

// ---------------------------------------------------------------------------------------------
// Types

/**
 * How a session reads and writes frames; the Responder/Initiator provide it over a TCP
 * connection. `write` takes the frame object (the provider encodes it, compact plus `\n`);
 * `read` gives the next decoded frame. A closed or broken connection is a SessionError
 * (reason "Closed" or "Protocol") from `read`/`write`.
 */
export interface FrameIO {
  readonly write: (frame: object) => Effect.Effect<void, SessionError>
  readonly read: Effect.Effect<Frame, SessionError>
}

export type SessionErrorReason = "Handshake" | "Decrypt" | "Protocol" | "KeyChanged" | "Closed"

export class SessionError extends Data.TaggedError("SessionError")<{
  readonly reason: SessionErrorReason
  readonly message: string
  /** KeyChanged only: the username (as the peer spelled it) and the key it presented, for `trust USER`. */
  readonly username?: string
  readonly presentedKey?: Uint8Array
}> {}

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

export interface HandshakeOptions {
  /** Default HANDSHAKE_TIMEOUT. On expiry the handshake fails with reason "Handshake". */
  readonly timeout?: Duration.Input | undefined
}

export interface AcceptOptions extends HandshakeOptions {
  /**
   * The key (`id`) the claimed username announces, if the registry knows one. A node that
   * proves another key for that name is refused before anything is pinned: otherwise a
   * stranger could claim a peer we have not had a secure session with yet and take its pin.
   */
  readonly announcedKeyId?: ((username: string) => Effect.Effect<string | undefined>) | undefined
}

export interface InitiateOptions extends HandshakeOptions {
  /** The username the user asked for: the responder must answer as this name (case-insensitive). */
  readonly expectedUsername?: string | undefined
  /** The `id` the peer announced: the responder's static key must be this key. */
  readonly expectedKeyId?: string | undefined
}

export type TrustResult =
  | { readonly _tag: "FirstUse" }
  | { readonly _tag: "Match" }
  | {
    readonly _tag: "Changed"
    readonly pinned: Uint8Array
    readonly pinnedFingerprint: string
    readonly presentedFingerprint: string
  }

// ---------------------------------------------------------------------------------------------
// Limits

export const HANDSHAKE_TIMEOUT: Duration.Input = "10 seconds"

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

const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")

/** Standard padded base64 only, canonical, and at most one Noise message long. */
const fromBase64 = (text: string, what: string): Result.Result<Uint8Array, string> => {
  if (text.length > MAX_BASE64_CHARS) {
    return Result.fail(`${what} is longer than the Noise limit of ${MAX_MESSAGE_LENGTH} bytes`)
  }
  const bytes = Buffer.from(text, "base64")
  // Node's decoder skips what it does not understand; the round trip catches all of it.
  if (bytes.toString("base64") !== text) return Result.fail(`${what} is not canonical standard base64`)
  return Result.succeed(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
}

const frameName = (frame: Frame): string => {
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
  }
}

const encodePayload = (username: string): Uint8Array => utf8.encode(JSON.stringify({ username }))

const decodePayload = Schema.decodeUnknownResult(Schema.fromJsonString(HandshakePayload))

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0

const fingerprintOrNote = (id: string): string => {
  const key = Buffer.from(id, "base64url")
  return key.byteLength === 32 ? fingerprint(new Uint8Array(key)) : `(not a key: ${JSON.stringify(id.slice(0, 60))})`
}

// ---------------------------------------------------------------------------------------------
// Handshake steps

const fail = (reason: SessionErrorReason, message: string) => Effect.fail(new SessionError({ reason, message }))

const explainNoise = (e: unknown): string => {
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

/** One synchronous Noise step; a throw becomes a Handshake SessionError. */
const noiseStep = <A>(what: string, step: () => A): Effect.Effect<A, SessionError> =>
  Effect.try({
    try: step,
    catch: (e) => new SessionError({ reason: "Handshake", message: `secure handshake failed: ${what}: ${explainNoise(e)}` })
  })

const startHandshake = (initiator: boolean): Effect.Effect<Handshake, SessionError, Crypto> =>
  Effect.gen(function*() {
    return yield* (yield* Crypto).handshake(initiator)
  }).pipe(
    Effect.mapError((e) =>
      new SessionError({ reason: "Handshake", message: `secure handshake failed: ${e.message}` })
    )
  )

/** Reads the frame carrying handshake message `n` (2 or 3) and decodes its bytes. */
const readHandshakeMessage = (io: FrameIO, n: 2 | 3): Effect.Effect<Uint8Array, SessionError> =>
  Effect.flatMap(io.read, (frame) => {
    if (frame._tag !== "Handshake") {
      return fail("Protocol", `secure handshake failed: expected handshake message ${n}, got a ${frameName(frame)} frame`)
    }
    return messageBytes(frame.frame, n)
  })

const messageBytes = (frame: HandshakeFrame, n: 1 | 2 | 3): Effect.Effect<Uint8Array, SessionError> => {
  const bytes = fromBase64(frame.hs, `handshake message ${n}`)
  return Result.isSuccess(bytes) ? Effect.succeed(bytes.success) : fail("Protocol", `secure handshake failed: ${bytes.failure}`)
}

/** The sender's username from the payload of handshake message `n`. */
const payloadUsername = (payload: Uint8Array, n: 2 | 3): Effect.Effect<string, SessionError> => {
  let text: string
  try {
    text = utf8Strict.decode(payload)
  } catch {
    return fail("Handshake", `secure handshake failed: the payload of message ${n} is not UTF-8`)
  }
  const r = decodePayload(text)
  return Result.isSuccess(r)
    ? Effect.succeed(r.success.username)
    : fail(
      "Handshake",
      `secure handshake failed: message ${n} must carry {"username": ...}: ${oneLine(r.failure.message)}`
    )
}

interface Authenticated {
  readonly username: string
  readonly key: Uint8Array
}

/** A check on the authenticated peer, run before the session is handed out. */
type Verify<E, R> = (peer: Authenticated) => Effect.Effect<void, E, R>

const noCheck: Verify<never, never> = () => Effect.void

const withHandshakeTimeout = (timeout: Duration.Input | undefined) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | SessionError, R> => {
  const duration = timeout ?? HANDSHAKE_TIMEOUT
  return Effect.timeoutOrElse(self, {
    duration,
    orElse: () =>
      fail(
        "Handshake",
        `secure handshake failed: the peer did not complete it within ${Duration.format(Duration.fromInputUnsafe(duration))}`
      )
  })
}

const remoteStaticOf = (hs: Handshake): Effect.Effect<Uint8Array, SessionError> => {
  const key = hs.remoteStatic()
  return key === undefined ? fail("Handshake", "secure handshake failed: no remote static key") : Effect.succeed(key)
}

/** The initiator must reach the peer it meant: the name it asked for and the key it announced. */
const checkExpected = (opts: InitiateOptions, peer: Authenticated): Effect.Effect<void, SessionError> => {
  const presented = fingerprint(peer.key)
  if (opts.expectedUsername !== undefined && usernameKey(opts.expectedUsername) !== usernameKey(peer.username)) {
    return fail(
      "Handshake",
      `refusing the secure session: the node at this address answered as "${peer.username}" ` +
        `(fingerprint ${presented}), not "${opts.expectedUsername}"; another node may be using that address`
    )
  }
  if (opts.expectedKeyId !== undefined && opts.expectedKeyId !== keyId(peer.key)) {
    return fail(
      "Handshake",
      `refusing the secure session: "${peer.username}" announced the key with fingerprint ` +
        `${fingerprintOrNote(opts.expectedKeyId)}, but the node at its address proved the key with fingerprint ` +
        `${presented}; another node may be impersonating that address`
    )
  }
  return Effect.void
}

const runInitiator = <E, R>(
  io: FrameIO,
  username: string,
  opts: InitiateOptions,
  verify: Verify<E, R>
): Effect.Effect<SecureChannel, SessionError | E, Crypto | R> =>
  Effect.gen(function*() {
    const hs = yield* startHandshake(true)
    const m1 = yield* noiseStep("writing message 1", () => hs.writeMessage())
    yield* io.write({ proto: PROTO, hs: toBase64(m1) })
    const m2 = yield* readHandshakeMessage(io, 2)
    const payload = yield* noiseStep("reading message 2", () => hs.readMessage(m2))
    const peer = { username: yield* payloadUsername(payload, 2), key: yield* remoteStaticOf(hs) }
    // The responder is authenticated now; refuse before message 3 reveals who we are to it.
    yield* checkExpected(opts, peer)
    yield* verify(peer)
    const m3 = yield* noiseStep("writing message 3", () => hs.writeMessage(encodePayload(username)))
    yield* io.write({ hs: toBase64(m3) })
    return makeChannel(io, hs.split(), peer)
  }).pipe(withHandshakeTimeout(opts.timeout))

const runResponder = <E, R>(
  io: FrameIO,
  first: HandshakeFrame,
  username: string,
  opts: AcceptOptions,
  verify: Verify<E, R>
): Effect.Effect<SecureChannel, SessionError | E, Crypto | R> =>
  Effect.gen(function*() {
    if (first.proto !== PROTO) {
      return yield* fail(
        "Protocol",
        first.proto === undefined
          ? `secure handshake refused: message 1 has no "proto" field (expected "${PROTO}")`
          : `secure handshake refused: the peer speaks "${oneLine(first.proto.slice(0, 40))}", this node speaks "${PROTO}"`
      )
    }
    const m1 = yield* messageBytes(first, 1)
    const hs = yield* startHandshake(false)
    const payload1 = yield* noiseStep("reading message 1", () => hs.readMessage(m1))
    if (payload1.byteLength !== 0) {
      return yield* fail("Handshake", `secure handshake failed: message 1 must have an empty payload, it has ${payload1.byteLength} bytes`)
    }
    const m2 = yield* noiseStep("writing message 2", () => hs.writeMessage(encodePayload(username)))
    yield* io.write({ hs: toBase64(m2) })
    const m3 = yield* readHandshakeMessage(io, 3)
    const payload3 = yield* noiseStep("reading message 3", () => hs.readMessage(m3))
    const peer = { username: yield* payloadUsername(payload3, 3), key: yield* remoteStaticOf(hs) }
    const announced = opts.announcedKeyId === undefined ? undefined : yield* opts.announcedKeyId(peer.username)
    if (announced !== undefined && announced !== keyId(peer.key)) {
      return yield* fail(
        "Handshake",
        `refusing the secure session: "${peer.username}" announces the key with fingerprint ` +
          `${fingerprintOrNote(announced)}, but this node proved the key with fingerprint ${fingerprint(peer.key)}; ` +
          `another node may be impersonating ${peer.username}`
      )
    }
    yield* verify(peer)
    return makeChannel(io, hs.split(), peer)
  }).pipe(withHandshakeTimeout(opts.timeout))

// ---------------------------------------------------------------------------------------------
// The channel

const makeChannel = (io: FrameIO, transport: Transport, peer: Authenticated): SecureChannel => {
  /** Why the channel ended; undefined while it is open. */
  let endedBecause: string | undefined = undefined
  const sendLock = Semaphore.makeUnsafe(1)

  const end = (e: SessionError): SessionError => {
    endedBecause ??= e.message
    return e
  }
  const endWith = (reason: SessionErrorReason, message: string) =>
    Effect.fail(end(new SessionError({ reason, message: `secure session with ${peer.username} ended: ${message}` })))
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
      if (frame._tag !== "Cipher") {
        return endWith("Protocol", `expected an encrypted (ct) frame, got a ${frameName(frame)} frame`)
      }
      const bytes = fromBase64(frame.frame.ct, "ciphertext")
      if (Result.isFailure(bytes)) return endWith("Protocol", bytes.failure)
      let plaintext: Uint8Array
      try {
        plaintext = transport.decrypt(bytes.success)
      } catch (e) {
        return endWith(
          "Decrypt",
          e instanceof NoiseError && (e.code === "DecryptFailed" || e.code === "InvalidLength")
            ? "a frame failed to decrypt (altered, replayed, reordered or truncated in transit); nothing from it was accepted"
            : `a frame failed to decrypt: ${explainNoise(e)}`
        )
      }
      let text: string
      try {
        text = utf8Strict.decode(plaintext)
      } catch {
        return endWith("Protocol", "the decrypted frame is not UTF-8")
      }
      const inner = decodeInner(text)
      return Result.isSuccess(inner) ? Effect.succeed(inner.success) : endWith("Protocol", inner.failure)
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

// ---------------------------------------------------------------------------------------------
// Trust on first use

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

/**
 * Compares `remoteKey` with the key pinned for `username` (lower-cased). The first key seen
 * for a name is pinned (FirstUse); a different key later is Changed and pins nothing.
 */
export const checkTrust = (username: string, remoteKey: Uint8Array): Effect.Effect<TrustResult, HistoryError, History> =>
  Effect.gen(function*() {
    const history = yield* History
    const name = usernameKey(username)
    const existing = yield* history.getPin(name)
    // The first key seen is pinned in one statement: of two first sessions (even in two
    // processes on one data dir) one pins, and the other compares with it.
    const pinned = Option.isSome(existing) ? existing.value : yield* history.pinIfAbsent(name, remoteKey, yield* now)
    if (sameBytes(pinned, remoteKey)) return Option.isSome(existing) ? { _tag: "Match" } as const : { _tag: "FirstUse" } as const
    // Kept so that `trust USER` can accept the key this peer proved, once the user has
    // compared fingerprints.
    yield* history.setPresentedKey(name, remoteKey, yield* now)
    return {
      _tag: "Changed",
      pinned,
      pinnedFingerprint: fingerprint(pinned),
      presentedFingerprint: fingerprint(remoteKey)
    } as const
  })

/** Pins `key` for `username` (lower-cased), replacing any pinned key: the `trust USER` command. */
export const trust = (username: string, key: Uint8Array): Effect.Effect<void, HistoryError, History> =>
  Effect.gen(function*() {
    const history = yield* History
    yield* history.setPin(usernameKey(username), key, yield* now)
  })

export class TrustError extends Data.TaggedError("TrustError")<{ readonly message: string }> {}

/**
 * The `trust USER` command: pins the key USER proved in the last secure session refused
 * for a changed key; failing that, the key USER announces now (the user has compared its
 * fingerprint). Returns the fingerprint now pinned.
 */
export const trustPeer = (username: string): Effect.Effect<string, TrustError | HistoryError, History | PeerRegistry> =>
  Effect.gen(function*() {
    const history = yield* History
    const name = usernameKey(username)
    const presented = yield* history.presentedKey(name)
    const peer = yield* (yield* PeerRegistry).lookup(name)
    const announced = Option.isSome(peer) && peer.value.id !== undefined ? Option.some(idToKey(peer.value.id)) : Option.none()
    const key = Option.isSome(presented) ? presented : announced
    if (Option.isNone(key)) {
      return yield* new TrustError({
        message: `no key to trust for ${username}: it has presented no new key in a secure session and announces none now`
      })
    }
    yield* trust(name, key.value)
    yield* history.setPresentedKey(name, undefined, yield* now)
    return fingerprint(key.value)
  })

export const keyChangedError = (
  username: string,
  presentedKey: Uint8Array,
  changed: { readonly pinnedFingerprint: string; readonly presentedFingerprint: string }
): SessionError =>
  new SessionError({
    reason: "KeyChanged",
    username,
    presentedKey,
    message: `refusing the secure session: ${username}'s key has CHANGED. ` +
      `Pinned fingerprint:    ${changed.pinnedFingerprint}. ` +
      `Presented fingerprint: ${changed.presentedFingerprint}. ` +
      `Someone may be impersonating ${username}, or ${username} made a new identity. ` +
      `Compare the fingerprint with ${username} in person or by phone, then run \`trust ${username}\` to accept the new key.`
  })

const verifyTrust: Verify<SessionError | HistoryError, History> = (peer) =>
  Effect.flatMap(checkTrust(peer.username, peer.key), (result) =>
    result._tag === "Changed" ? Effect.fail(keyChangedError(peer.username, peer.key, result)) : Effect.void)

// ---------------------------------------------------------------------------------------------
// Entry points

/**
 * The initiator's handshake, without the trust check (prefer `initiateTrusted`):
 * writes message 1, reads 2, checks `expectedUsername` / `expectedKeyId`, writes 3.
 */
export const initiate = (
  io: FrameIO,
  username: string,
  opts: InitiateOptions = {}
): Effect.Effect<SecureChannel, SessionError, Crypto> => runInitiator(io, username, opts, noCheck)

/**
 * The responder's handshake, without the trust check (prefer `acceptTrusted`), given the
 * already-read first frame: refuses a `proto` other than p2pchat/1, answers with message 2,
 * reads message 3.
 */
export const accept = (
  io: FrameIO,
  first: HandshakeFrame,
  username: string,
  opts: AcceptOptions = {}
): Effect.Effect<SecureChannel, SessionError, Crypto> => runResponder(io, first, username, opts, noCheck)

/**
 * `initiate` plus trust on first use. The responder's key is checked (and pinned on first
 * use) once message 2 has authenticated it, before message 3: a changed key is refused with
 * reason "KeyChanged" and the impostor never learns this node's identity.
 */
export const initiateTrusted = (
  io: FrameIO,
  username: string,
  opts: InitiateOptions = {}
): Effect.Effect<SecureChannel, SessionError | HistoryError, Crypto | History> =>
  runInitiator(io, username, opts, verifyTrust)

/** `accept` plus trust on first use, checked once the handshake is complete. */
export const acceptTrusted = (
  io: FrameIO,
  first: HandshakeFrame,
  username: string,
  opts: AcceptOptions = {}
): Effect.Effect<SecureChannel, SessionError | HistoryError, Crypto | History> =>
  runResponder(io, first, username, opts, verifyTrust)
