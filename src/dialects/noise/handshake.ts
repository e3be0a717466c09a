/**
 * The p2pchat/1 secure handshake (protocol: "Secure session"), both roles side by side:
 *
 *   -> {"proto": "p2pchat/1", "hs": m1}     e                 (empty payload)
 *   <- {"hs": m2}                           e, ee, s, es      payload {"username": responder}
 *   -> {"hs": m3}                           s, se             payload {"username": initiator}
 *   <> {"ct": ...}                          transport messages (channel.ts)
 *
 * A responder that refuses the initiator's proven key because it pinned another one for
 * that name says so before it closes: `<- {"error": "key-changed"}` (nothing more).
 *
 * A handshake is never resumed: any failure ends it. Use `initiateTrusted` /
 * `acceptTrusted`: they run the Trust service's check, so a caller cannot forget it.
 * `initiate` / `accept` are the bare handshakes.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { fingerprint } from "../../domain/Fingerprint.ts"
import { type ErrorFrame, type HandshakeFrame, HandshakePayload } from "../../domain/Frames.ts"
import type { Handshake, Transport } from "../../domain/Noise.ts"
import { oneLine, PROTO, usernameKey } from "../../domain/Presence.ts"
import { Crypto, keyId } from "../../services/Crypto.ts"
import type { HistoryError } from "../../services/History.ts"
import { type Authenticated, Trust } from "../../trust/Trust.ts"
import {
  explainNoise,
  fail,
  type FrameIO,
  frameName,
  fromBase64,
  HANDSHAKE_TIMEOUT,
  makeChannel,
  type SecureChannel,
  SessionError,
  toBase64
} from "./channel.ts"

export interface HandshakeOptions {
  /** Default HANDSHAKE_TIMEOUT. On expiry the handshake fails with reason "Handshake". */
  readonly timeout?: Duration.Input | undefined
  /**
   * What the session is for: message 1's `proto` and the Noise prologue (its ASCII bytes).
   * Default `p2pchat/1` (a chat session); a file session's is `p2pchat-file/1`, so that a
   * session of one kind can never be taken for the other.
   */
  readonly proto?: string | undefined
}

/** What a complete handshake gives: who the peer proved to be, and the transport keys. */
export interface Completed {
  readonly peer: Authenticated
  readonly transport: Transport
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

const utf8 = new TextEncoder()
const utf8Strict = new TextDecoder("utf-8", { fatal: true })

const encodePayload = (username: string): Uint8Array => utf8.encode(JSON.stringify({ username }))

const decodePayload = Schema.decodeUnknownResult(Schema.fromJsonString(HandshakePayload))

const fingerprintOrNote = (id: string): string => {
  const key = Buffer.from(id, "base64url")
  return key.byteLength === 32 ? fingerprint(new Uint8Array(key)) : `(not a key: ${JSON.stringify(id.slice(0, 60))})`
}

/** The Trust service's rule, run on the authenticated peer before the session is handed out. */
const verifyTrust: Verify<SessionError | HistoryError, Trust> = (peer) =>
  Effect.gen(function*() {
    const refused = yield* (yield* Trust).verifySession(peer)
    if (Option.isSome(refused)) return yield* new SessionError({ reason: "KeyChanged", ...refused.value })
  })

/** One synchronous Noise step; a throw becomes a Handshake SessionError. */
const noiseStep = <A>(what: string, step: () => A): Effect.Effect<A, SessionError> =>
  Effect.try({
    try: step,
    catch: (e) => new SessionError({ reason: "Handshake", message: `secure handshake failed: ${what}: ${explainNoise(e)}` })
  })

const startHandshake = (initiator: boolean, proto: string): Effect.Effect<Handshake, SessionError, Crypto> =>
  Effect.gen(function*() {
    return yield* (yield* Crypto).handshake(initiator, utf8.encode(proto))
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
): Effect.Effect<Completed, SessionError | E, Crypto | R> =>
  Effect.gen(function*() {
    const hs = yield* startHandshake(true, opts.proto ?? PROTO)
    const m1 = yield* noiseStep("writing message 1", () => hs.writeMessage())
    yield* io.write({ proto: opts.proto ?? PROTO, hs: toBase64(m1) })
    const m2 = yield* readHandshakeMessage(io, 2)
    const payload = yield* noiseStep("reading message 2", () => hs.readMessage(m2))
    const peer = { username: yield* payloadUsername(payload, 2), key: yield* remoteStaticOf(hs) }
    // The responder is authenticated now; refuse before message 3 reveals who we are to it.
    yield* checkExpected(opts, peer)
    yield* verify(peer)
    const m3 = yield* noiseStep("writing message 3", () => hs.writeMessage(encodePayload(username)))
    yield* io.write({ hs: toBase64(m3) })
    return { peer, transport: hs.split() }
  }).pipe(withHandshakeTimeout(opts.timeout))

const runResponder = <E, R>(
  io: FrameIO,
  first: HandshakeFrame,
  username: string,
  opts: AcceptOptions,
  verify: Verify<E, R>
): Effect.Effect<Completed, SessionError | E, Crypto | R> =>
  Effect.gen(function*() {
    const proto = opts.proto ?? PROTO
    if (first.proto !== proto) {
      return yield* fail(
        "Protocol",
        first.proto === undefined
          ? `secure handshake refused: message 1 has no "proto" field (expected "${proto}")`
          : `secure handshake refused: the peer speaks "${oneLine(first.proto.slice(0, 40))}", this node speaks "${proto}"`
      )
    }
    const m1 = yield* messageBytes(first, 1)
    const hs = yield* startHandshake(false, proto)
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
    yield* verify(peer).pipe(Effect.tapError((e) => isKeyChanged(e) ? sayRefusal(io, { error: "key-changed" }) : Effect.void))
    return { peer, transport: hs.split() }
  }).pipe(withHandshakeTimeout(opts.timeout))

const channelOf = (io: FrameIO) => ({ peer, transport }: Completed): SecureChannel => makeChannel(io, transport, peer)

const isKeyChanged = (e: unknown): boolean => e instanceof SessionError && e.reason === "KeyChanged"

/** The responder's last frame before it refuses a complete handshake; a failed write changes nothing. */
const sayRefusal = (io: FrameIO, frame: ErrorFrame) => Effect.ignore(io.write(frame))

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
): Effect.Effect<SecureChannel, SessionError, Crypto> => Effect.map(runInitiator(io, username, opts, noCheck), channelOf(io))

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
): Effect.Effect<SecureChannel, SessionError, Crypto> => Effect.map(runResponder(io, first, username, opts, noCheck), channelOf(io))

/**
 * `initiate` plus trust on first use. The responder's key is checked (and pinned on first
 * use) once message 2 has authenticated it, before message 3: a changed key is refused with
 * reason "KeyChanged" and the impostor never learns this node's identity.
 */
export const initiateTrusted = (
  io: FrameIO,
  username: string,
  opts: InitiateOptions = {}
): Effect.Effect<SecureChannel, SessionError | HistoryError, Crypto | Trust> =>
  Effect.map(runInitiator(io, username, opts, verifyTrust), channelOf(io))

/** `accept` plus trust on first use, checked once the handshake is complete. */
export const acceptTrusted = (
  io: FrameIO,
  first: HandshakeFrame,
  username: string,
  opts: AcceptOptions = {}
): Effect.Effect<SecureChannel, SessionError | HistoryError, Crypto | Trust> =>
  Effect.map(runResponder(io, first, username, opts, verifyTrust), channelOf(io))

/**
 * The handshakes with the trust check, giving the proven peer and the transport keys rather
 * than a JSON channel: for a session whose messages after the handshake are not `ct`
 * frames (a file session, protocol.md 9, with `proto: "p2pchat-file/1"`).
 */
export const initiateKeys = (
  io: FrameIO,
  username: string,
  opts: InitiateOptions = {}
): Effect.Effect<Completed, SessionError | HistoryError, Crypto | Trust> => runInitiator(io, username, opts, verifyTrust)

export const acceptKeys = (
  io: FrameIO,
  first: HandshakeFrame,
  username: string,
  opts: AcceptOptions = {}
): Effect.Effect<Completed, SessionError | HistoryError, Crypto | Trust> => runResponder(io, first, username, opts, verifyTrust)
