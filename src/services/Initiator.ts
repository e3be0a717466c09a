/**
 * Opens chats to peers and sends messages (PROTOCOL.md 2 and 3). A message is stored as
 * pending first, then sent; a p2pchat peer acks it once stored, and it becomes delivered.
 * Pending messages are sent again, with the same id, when their peer announces again.
 *
 * Pending messages are also retried every RETRY_EVERY_MS, and to a peer as soon as a new
 * secure session with it opens (after `trust`, say). They expire after PENDING_EXPIRY_MS:
 * they are no longer retried, and stay in the history as pending.
 *
 * A message that cannot be stored (disk full, data dir not writable, database locked) is
 * not sent: durability first. The protocol's promise is "stored as pending, then sent": a
 * message that left unstored would be delivered yet missing from the sender's own history,
 * could never be marked delivered, and would be lost on our side by a restart. So it is kept
 * in memory (at most `maxUnstoredMessages`, oldest first), the user is told (an Events
 * warning and the SendError), and it is stored again before every later send and retry;
 * once stored it is an ordinary pending message, sent (and acked) exactly once by id. A
 * message to a classic peer is not kept: classic peers get one attempt only.
 *
 * Connections are kept per (peer, dialect) as "links": one reader fiber per link routes
 * acks and key answers to whoever waits for them, so sends can be pipelined. A dialect is
 * how frames are written on a link:
 *   p2p-noise    a Noise XX handshake when the link opens (trust on first use, the peer's
 *                announced name and key checked), then `ct` frames of inner {type:"msg"}
 *                objects; the reader fiber opens the peer's `ct` frames and routes the acks
 *   p2p-plain    unencrypted_message + id + from, acked              (a p2pchat peer)
 *   p2p-classic  one key exchange per link, encrypted_message + id + from, acked
 *   classic-*    a classic peer: one frame per write, at most 1024 bytes, 100 ms apart,
 *                a long text split into several messages, a key exchange before every
 *                encrypted message, no id, no acks, no retries
 * The default is p2p-noise for a p2pchat peer that announces a key, classic-3des for a
 * classic peer (and p2p-plain for a p2pchat peer without a key).
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import { CLASSIC_WARNING, classicEncrypt, classicKey24, classicShared, randomClassicKey } from "../domain/Classic.ts"
import { encodePlainText, type InnerMessage } from "../domain/Frames.ts"
import { encodeFrame, MAX_FRAME_BYTES } from "../domain/Framing.ts"
import type { Peer } from "../domain/Peer.ts"
import { usernameKey } from "../domain/Presence.ts"
import { Config } from "./Config.ts"
import { dial, type FrameChannel, sessionIO } from "./Connection.ts"
import { Crypto, keyId } from "./Crypto.ts"
import { fingerprint } from "../domain/Fingerprint.ts"
import { Events } from "./Events.ts"
import { History, type HistoryEntry, type Mode, type NewMessage } from "./History.ts"
import { PeerRegistry, type RegistryChange } from "./PeerRegistry.ts"
import { initiateTrusted, MAX_INNER_BYTES, type SecureChannel, type SessionError } from "./SecureSession.ts"

export type SendMode = "secure" | "plain" | "classic"

export interface SendResult {
  readonly id: string
  /** The peer's username as it announces it. */
  readonly peer: string
  readonly mode: Mode
  /** delivered: acked by a p2pchat peer; sent: written to a classic peer (which never acks). */
  readonly state: "delivered" | "sent" | "pending"
}

export class SendError extends Data.TaggedError("SendError")<{
  readonly reason: "UnknownUser" | "Unreachable" | "Timeout" | "Storage" | "Refused" | "Unsupported" | "KeyChanged"
  readonly message: string
}> {}

export class Initiator extends Context.Service<Initiator, {
  /** Sends one message; `mode` defaults to the best the peer speaks. */
  readonly send: (username: string, text: string, mode?: SendMode) => Effect.Effect<SendResult, SendError>
  /** Resends pending messages to online p2pchat peers (with their ids); how many got delivered. */
  readonly retryPending: (username?: string) => Effect.Effect<number>
  /** Closes the connections to a peer, or to every peer. */
  readonly close: (username?: string) => Effect.Effect<void>
  /** Messages kept in memory because they could not be stored yet (oldest first). */
  readonly unstored: Effect.Effect<ReadonlyArray<UnstoredMessage>>
}>()("p2pchat/Initiator") {}

/** An outgoing message that could not be stored yet (disk full...): kept in memory, not sent. */
export interface UnstoredMessage extends NewMessage {
  /** The peer's username as it announced it when the message was written. */
  readonly username: string
}

/** Timers of the initiator; tests shorten them. */
export interface InitiatorTuning {
  /** How long a p2pchat peer has to ack a message (and any peer to answer a key). */
  readonly ackTimeoutMs: number
  readonly connectTimeoutMs: number
  /** The pause between two frames to a classic peer (PROTOCOL.md "Writing to a classic peer"). */
  readonly classicPauseMs: number
  /** How long a secure handshake may take once connected; default the larger of the two above. */
  readonly handshakeTimeoutMs?: number | undefined
  /** How long a pending message is retried; default PENDING_EXPIRY_MS. */
  readonly pendingExpiryMs?: number | undefined
  /**
   * Besides each registry change (a peer appears, comes back online, moves), pending messages
   * to online peers are retried this often; default RETRY_EVERY_MS. It catches a peer that
   * restarted before it was seen away, which the registry does not report as a change.
   */
  readonly retryEveryMs?: number | undefined
}

export const DEFAULT_TUNING: InitiatorTuning = { ackTimeoutMs: 5000, connectTimeoutMs: 5000, classicPauseMs: 100 }

/** A pending message older than this (by its `at`) is no longer retried; it stays in history. */
export const PENDING_EXPIRY_MS = 7 * 24 * 60 * 60 * 1000

export const RETRY_EVERY_MS = 30_000

export const InitiatorTuning = Context.Reference<InitiatorTuning>("p2pchat/InitiatorTuning", {
  defaultValue: () => DEFAULT_TUNING
})

// ---------------------------------------------------------------------------------------------
// Splitting a text for a classic peer (pure)

/** A classic responder reads each frame with one 1024-byte read. */
export const CLASSIC_FRAME_LIMIT = 1024

const frameBytes = (frame: object): number => Buffer.byteLength(encodeFrame(frame), "utf8")
const PLAIN_OVERHEAD = frameBytes({ unencrypted_message: "" })
const ENCRYPTED_OVERHEAD = frameBytes({ encrypted_message: "" })
const base64Length = (bytes: number): number => 4 * Math.ceil(bytes / 3)

/** Bytes on the wire of the frame carrying `textBytes` bytes of UTF-8 text to a classic peer. */
export const classicFrameBytes = (textBytes: number, encrypted: boolean): number =>
  encrypted
    ? ENCRYPTED_OVERHEAD + base64Length(8 * (Math.floor(textBytes / 8) + 1)) // 3DES + PKCS#5: 1..8 bytes of padding
    : PLAIN_OVERHEAD + base64Length(textBytes)

/** The most UTF-8 bytes of text one classic frame can carry within CLASSIC_FRAME_LIMIT. */
export const classicPartBytes = (encrypted: boolean): number => {
  let n = CLASSIC_FRAME_LIMIT
  while (classicFrameBytes(n, encrypted) > CLASSIC_FRAME_LIMIT) n--
  return n
}

/**
 * Cuts a text into the fewest parts, in order, whose frames each fit one classic read;
 * cuts fall between characters (code points), never inside a UTF-8 sequence.
 */
export const splitForClassic = (text: string, encrypted: boolean): ReadonlyArray<string> => {
  const max = classicPartBytes(encrypted)
  if (Buffer.byteLength(text, "utf8") <= max) return [text]
  const parts: Array<string> = []
  let current = ""
  let bytes = 0
  for (const ch of text) {
    const n = Buffer.byteLength(ch, "utf8")
    if (bytes + n > max) {
      parts.push(current)
      current = ""
      bytes = 0
    }
    current += ch
    bytes += n
  }
  parts.push(current)
  return parts
}

/**
 * Bytes between the braces of the frame that carries `text` to a p2pchat peer: what its
 * splitter holds against MAX_FRAME_BYTES.
 */
export const p2pFrameBytes = (text: string, encrypted: boolean, id: string, from: string | undefined): number => {
  const n = Buffer.byteLength(text, "utf8")
  const body = encrypted ? "A".repeat(base64Length(8 * (Math.floor(n / 8) + 1))) : "A".repeat(base64Length(n))
  const frame = { [encrypted ? "encrypted_message" : "unencrypted_message"]: body, id, ...(from !== undefined ? { from } : {}) }
  return Buffer.byteLength(JSON.stringify(frame), "utf8")
}

/** UTF-8 bytes of the inner object that carries a secure message (at most MAX_INNER_BYTES). */
export const secureInnerBytes = (inner: InnerMessage): number => Buffer.byteLength(JSON.stringify(inner), "utf8")

// ---------------------------------------------------------------------------------------------
// Links

type Dialect = "p2p-noise" | "p2p-plain" | "p2p-classic" | "classic-plain" | "classic-3des"

const isClassicPeerDialect = (d: Dialect): boolean => d === "classic-plain" || d === "classic-3des"

/** The connection went away under a send (write failed, or closed before the answer). */
class LinkLost extends Data.TaggedError("LinkLost")<{ readonly message: string }> {}
/** The peer stayed silent where an answer was due; `message` says what it did not do. */
class NoAnswer extends Data.TaggedError("NoAnswer")<{ readonly message: string }> {}

interface Link {
  readonly cacheKey: string
  readonly peerKey: string
  readonly target: string
  readonly ch: FrameChannel
  readonly scope: Scope.Closeable
  /** One classic exchange (key, then message) at a time on this link. */
  readonly lock: Semaphore.Semaphore
  readonly acks: Map<string, Deferred.Deferred<void, LinkLost>>
  keyWaiter: Deferred.Deferred<number, LinkLost> | undefined
  /** p2p-classic: the key agreed once for the link. */
  key24: Buffer | undefined
  /** p2p-noise: the session opened when the link was. */
  readonly secure: SecureChannel | undefined
  open: boolean
}

const idToBytes = (id: string): Uint8Array => new Uint8Array(Buffer.from(id, "base64url"))

const monotonicMillis = Effect.map(Clock.monotonicTimeNanos, (n) => Number(n / 1_000_000n))

export const initiatorLayer: Layer.Layer<Initiator, never, Config | History | Events | PeerRegistry | Crypto> = Layer.effect(
  Initiator,
  Effect.gen(function*() {
    const config = yield* Config
    const history = yield* History
    const events = yield* Events
    const registry = yield* PeerRegistry
    const tuning = yield* InitiatorTuning
    const crypto = yield* Crypto
    const layerScope = yield* Effect.scope
    const handshakeTimeoutMs = tuning.handshakeTimeoutMs ?? Math.max(tuning.connectTimeoutMs, tuning.ackTimeoutMs)
    const pendingExpiryMs = tuning.pendingExpiryMs ?? PENDING_EXPIRY_MS

    const links = new Map<string, Link>()
    /** Links being opened: concurrent sends to one peer share one connection. */
    const opening = new Map<string, Deferred.Deferred<Link, SendError>>()
    /** Ids being sent now, so a retry does not race the first attempt. */
    const inFlight = new Set<string>()
    /** Monotonic ms of the last frame written to each classic peer (the pause is per peer). */
    const classicLastWrite = new Map<string, number>()
    /** Peers whose pending messages are being retried now. */
    const retrying = new Set<string>()
    /** (peer, announced id) pairs already told that secure messages wait for `trust`. */
    const toldBlocked = new Set<string>()
    /** Messages that could not be stored yet, oldest first (see the top of this file). */
    const unstored: Array<UnstoredMessage> = []
    const unstoredLock = yield* Semaphore.make(1)
    /** Why the oldest of them could not be stored, the last time it was tried. */
    let unstoredProblem = ""

    const secondsText = (ms: number) => `${ms / 1000} s`

    const dropLink = (link: Link, why: string) =>
      Effect.suspend(() => {
        if (!link.open) return Effect.void
        link.open = false
        if (links.get(link.cacheKey) === link) links.delete(link.cacheKey)
        const lost = new LinkLost({ message: why })
        for (const d of link.acks.values()) Deferred.doneUnsafe(d, Effect.fail(lost))
        link.acks.clear()
        if (link.keyWaiter !== undefined) Deferred.doneUnsafe(link.keyWaiter, Effect.fail(lost))
        link.keyWaiter = undefined
        return Effect.andThen(
          Effect.logDebug(`initiator: connection to ${link.target} closed: ${why}`),
          Scope.close(link.scope, Exit.void)
        )
      })

    /** The one reader of a secure link: opens the peer's `ct` frames and routes the acks. */
    const pumpSecure = (link: Link, secure: SecureChannel, connectionEnded: (e: SessionError) => unknown) =>
      Effect.gen(function*() {
        for (;;) {
          const inner = yield* secure.receive
          if (inner.type === "ack") {
            const waiter = link.acks.get(inner.id)
            if (waiter !== undefined) {
              link.acks.delete(inner.id)
              Deferred.doneUnsafe(waiter, Effect.void)
            }
          } else {
            yield* Effect.logDebug(`initiator: ignored a secure message from ${link.target} on an outgoing link`)
          }
        }
      }).pipe(
        Effect.catch((e) =>
          Effect.andThen(
            connectionEnded(e) !== undefined || !link.open
              ? Effect.void
              : Effect.andThen(
                Effect.logWarning(`initiator: ${e.message}`),
                events.publish({ event: "warning", message: e.message })
              ),
            dropLink(link, e.message)
          )
        )
      )

    /** The one reader of a link: routes acks and key answers, notices the end. */
    const pump = (link: Link) =>
      Effect.gen(function*() {
        for (;;) {
          const frame = yield* link.ch.next
          if (frame._tag === "Ack") {
            const waiter = link.acks.get(frame.frame.ack)
            if (waiter !== undefined) {
              link.acks.delete(frame.frame.ack)
              Deferred.doneUnsafe(waiter, Effect.void)
            }
          } else if (frame._tag === "Key") {
            const waiter = link.keyWaiter
            link.keyWaiter = undefined
            if (waiter !== undefined) Deferred.doneUnsafe(waiter, Effect.succeed(frame.frame.key))
          } else {
            yield* Effect.logDebug(`initiator: ignored a ${frame._tag} frame from ${link.target}`)
          }
        }
      }).pipe(Effect.catch((e) => dropLink(link, e.message)))

    const keptNote = (peer: Peer) => `; the message is kept and sent again when ${peer.username} announces`

    /** What a failed secure handshake means for the user. */
    const handshakeFailed = (peer: Peer, connectionEnded: (e: SessionError) => unknown) => (e: SessionError): SendError => {
      const where = `${peer.username} (${peer.address}:${peer.port})`
      if (e.reason === "KeyChanged") {
        const name = e.username ?? peer.username
        return new SendError({
          reason: "KeyChanged",
          message: `${e.message} From the command line: \`p2pchat trust ${name}\`; in the console: \`trust ${name}\`. ` +
            `The message is kept as pending and is sent once you trust the new key (not before).`
        })
      }
      if (connectionEnded(e) !== undefined) {
        return new SendError({
          reason: "Unreachable",
          message: `${where} ended the connection during the secure handshake (${e.message}); ` +
            `it may not accept secure sessions now${keptNote(peer)}`
        })
      }
      return new SendError({ reason: "Refused", message: `${where}: ${e.message}${keptNote(peer)}` })
    }

    /** Runs the Noise handshake on a new connection, as this node's name, to the peer it announced. */
    const handshake = (peer: Peer, ch: FrameChannel) =>
      Effect.gen(function*() {
        const ownName = config.name
        if (ownName === undefined) {
          return yield* new SendError({
            reason: "Refused",
            message: "a secure session proves your username to the peer, and this node has none; start it with --name"
          })
        }
        const { io, connectionEnded } = sessionIO(ch)
        return yield* initiateTrusted(io, ownName, {
          expectedUsername: peer.username,
          expectedKeyId: peer.id,
          // a backstop: the timeout below answers first
          timeout: handshakeTimeoutMs + 1000
        }).pipe(
          Effect.provideService(Crypto, crypto),
          Effect.provideService(History, history),
          Effect.catchTag("HistoryError", (e) =>
            Effect.fail(
              new SendError({ reason: "Storage", message: `cannot check the pinned key of ${peer.username}: ${e.message}` })
            )),
          Effect.mapError((e) => e._tag === "SessionError" ? handshakeFailed(peer, connectionEnded)(e) : e),
          Effect.timeoutOrElse({
            duration: handshakeTimeoutMs,
            orElse: () =>
              Effect.fail(
                new SendError({
                  reason: "Timeout",
                  message: `${peer.username} (${peer.address}:${peer.port}) did not complete the secure handshake within ` +
                    `${secondsText(handshakeTimeoutMs)}${keptNote(peer)}`
                })
              )
          }),
          Effect.map((secure) => ({ secure, connectionEnded }))
        )
      })

    const openLink = (peer: Peer, dialect: Dialect, cacheKey: string) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(layerScope)
        const target = `${peer.address}:${peer.port}`
        const ch = yield* dial(peer.address, peer.port, tuning.connectTimeoutMs).pipe(
          Scope.provide(scope),
          Effect.tapError(() => Scope.close(scope, Exit.void)),
          Effect.mapError((e) =>
            new SendError({
              reason: "Unreachable",
              message: `cannot reach ${peer.username}: ${e.message}` + (isClassicPeerDialect(dialect) ? "" : keptNote(peer))
            })
          )
        )
        const session = dialect === "p2p-noise"
          ? yield* handshake(peer, ch).pipe(Effect.tapError(() => Scope.close(scope, Exit.void)))
          : undefined
        const link: Link = {
          cacheKey,
          peerKey: peer.key,
          target,
          ch,
          scope,
          lock: yield* Semaphore.make(1),
          acks: new Map(),
          keyWaiter: undefined,
          key24: undefined,
          secure: session?.secure,
          open: true
        }
        links.set(cacheKey, link)
        if (session !== undefined) {
          const { secure, connectionEnded } = session
          yield* Effect.forkIn(pumpSecure(link, secure, connectionEnded), layerScope)
          yield* Effect.logDebug(`initiator: secure session to ${secure.remoteUsername} (${target}), fingerprint ${secure.remoteFingerprint}`)
          yield* events.publish({
            event: "info",
            message: `secure session to ${secure.remoteUsername}, fingerprint ${secure.remoteFingerprint}`
          })
          // A secure session is open: what waited for it (after `trust`, say) can go now.
          yield* Effect.forkIn(retryPending(peer.key), layerScope)
        } else {
          yield* Effect.forkIn(pump(link), layerScope)
        }
        return link
      })

    /** The open link to a peer in a dialect, dialing when there is none. */
    const getLink = (peer: Peer, dialect: Dialect): Effect.Effect<Link, SendError> =>
      Effect.suspend(() => {
        const cacheKey = `${peer.key}\u0000${dialect}`
        const cached = links.get(cacheKey)
        if (cached !== undefined && cached.open) {
          if (cached.target !== `${peer.address}:${peer.port}`) {
            return Effect.andThen(dropLink(cached, "the peer moved"), getLink(peer, dialect))
          }
          if (cached.secure !== undefined && peer.id !== undefined && keyId(cached.secure.remoteKey) !== peer.id) {
            return Effect.andThen(dropLink(cached, "the peer announces another key"), getLink(peer, dialect))
          }
          return Effect.succeed(cached)
        }
        const pendingOpen = opening.get(cacheKey)
        if (pendingOpen !== undefined) return Deferred.await(pendingOpen)
        const done = Deferred.makeUnsafe<Link, SendError>()
        opening.set(cacheKey, done)
        return openLink(peer, dialect, cacheKey).pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              opening.delete(cacheKey)
              Deferred.doneUnsafe(done, exit)
            })
          )
        )
      })

    const write = (link: Link, frame: object): Effect.Effect<void, LinkLost> =>
      Effect.suspend(() =>
        link.open
          ? Effect.mapError(link.ch.send(frame), (e) => new LinkLost({ message: e.message }))
          : Effect.fail(new LinkLost({ message: "connection closed" }))
      )

    /**
     * Writes to a classic peer no sooner than the pause after the previous frame to it, on
     * any of its connections, and only if the connection is still open after the pause.
     */
    const paced = (link: Link, frame: object) =>
      Effect.gen(function*() {
        const wait = (classicLastWrite.get(link.peerKey) ?? 0) + tuning.classicPauseMs - (yield* monotonicMillis)
        if (wait > 0) yield* Effect.sleep(wait)
        yield* write(link, frame)
        classicLastWrite.set(link.peerKey, yield* monotonicMillis)
      })

    /** Sends `{"key": a}` and waits for the peer's number; returns the classic key24. */
    const keyExchange = (link: Link, send: (frame: object) => Effect.Effect<void, LinkLost>) =>
      Effect.gen(function*() {
        const own = randomClassicKey()
        const waiter = Deferred.makeUnsafe<number, LinkLost>()
        link.keyWaiter = waiter
        yield* send({ key: own })
        const theirs = yield* Deferred.await(waiter).pipe(
          Effect.timeoutOrElse({
            duration: tuning.ackTimeoutMs,
            orElse: () =>
              Effect.fail(new NoAnswer({ message: `did not answer the key exchange within ${secondsText(tuning.ackTimeoutMs)}` }))
          })
        )
        return classicKey24(classicShared(own, theirs))
      })

    /** Runs `use` on a link; if the link is lost under it, once more on a new connection. */
    const withLink = <A>(
      peer: Peer,
      dialect: Dialect,
      use: (link: Link) => Effect.Effect<A, LinkLost | NoAnswer>
    ): Effect.Effect<A, SendError | NoAnswer> => {
      const once = Effect.flatMap(getLink(peer, dialect), (link) =>
        use(link).pipe(
          Effect.tapError((e) => dropLink(link, e.message))
        ))
      const lost = (e: LinkLost) =>
        new SendError({
          reason: "Unreachable",
          message: `lost the connection to ${peer.username} (${peer.address}:${peer.port}): ${e.message}` +
            (isClassicPeerDialect(dialect) ? "" : `; the message is kept and sent again when ${peer.username} announces`)
        })
      return once.pipe(
        Effect.catchTag("LinkLost", () => once),
        Effect.catchTag("LinkLost", (e) => Effect.fail(lost(e)))
      )
    }

    const noAnswer = (peer: Peer, e: NoAnswer, retried: boolean) =>
      new SendError({
        reason: "Timeout",
        message: `${peer.username} (${peer.address}:${peer.port}) ${e.message}` +
          (retried
            ? `; the message stays pending and is sent again when ${peer.username} announces`
            : "; classic peers get one attempt")
      })

    /**
     * To a p2pchat peer: one frame with id and from (or one secure `msg`), then the ack.
     * `sentAt` is when the message was first stored (a retry keeps it).
     */
    const deliverP2p = (peer: Peer, id: string, text: string, dialect: "p2p-noise" | "p2p-plain" | "p2p-classic", sentAt: string) =>
      Effect.gen(function*() {
        inFlight.add(id)
        yield* withLink(peer, dialect, (link) =>
          Effect.gen(function*() {
            // undefined for p2p-noise: the secure channel frames the message itself
            let frame: object | undefined
            if (dialect === "p2p-classic") {
              const key24 = link.key24 ?? (yield* link.lock.withPermit(
                Effect.suspend(() =>
                  link.key24 !== undefined
                    ? Effect.succeed(link.key24)
                    : Effect.tap(keyExchange(link, (f) => write(link, f)), (k) => Effect.sync(() => void (link.key24 = k)))
                )
              ))
              frame = { encrypted_message: classicEncrypt(key24, text), id, ...fromField }
            } else if (dialect === "p2p-plain") {
              frame = { unencrypted_message: encodePlainText(text), id, ...fromField }
            }
            let ack = link.acks.get(id)
            if (ack === undefined) {
              ack = Deferred.makeUnsafe<void, LinkLost>()
              link.acks.set(id, ack)
            }
            const waiter = ack
            if (frame !== undefined) {
              yield* write(link, frame)
            } else if (link.secure !== undefined && link.open) {
              yield* link.secure.send({ type: "msg", id, text, sentAt }).pipe(
                Effect.mapError((e) => new LinkLost({ message: e.message }))
              )
            } else {
              return yield* new LinkLost({ message: "connection closed" })
            }
            yield* Deferred.await(waiter).pipe(
              Effect.timeoutOrElse({
                duration: tuning.ackTimeoutMs,
                orElse: () => Effect.fail(new NoAnswer({ message: `did not acknowledge the message within ${secondsText(tuning.ackTimeoutMs)}` }))
              }),
              Effect.ensuring(Effect.sync(() => {
                if (link.acks.get(id) === waiter) link.acks.delete(id)
              }))
            )
          })).pipe(
            Effect.catchTag("NoAnswer", (e) => Effect.fail(noAnswer(peer, e, true)))
          )
        const changed = yield* history.setState(id, peer.key, "delivered").pipe(
          Effect.mapError((e) =>
            new SendError({ reason: "Storage", message: `delivered to ${peer.username}, but could not record it: ${e.message}` })
          )
        )
        if (changed) yield* events.publish({ event: "delivered", id, to: peer.username })
      }).pipe(Effect.ensuring(Effect.sync(() => void inFlight.delete(id))))

    /** To a classic peer: one frame per part, paced, a key exchange before each encrypted part. */
    const deliverClassic = (peer: Peer, id: string, text: string, encrypted: boolean) =>
      Effect.gen(function*() {
        const dialect: Dialect = encrypted ? "classic-3des" : "classic-plain"
        for (const part of splitForClassic(text, encrypted)) {
          yield* withLink(peer, dialect, (link) =>
            link.lock.withPermit(Effect.gen(function*() {
              if (encrypted) {
                const key24 = yield* keyExchange(link, (f) => paced(link, f))
                yield* paced(link, { encrypted_message: classicEncrypt(key24, part) })
              } else {
                yield* paced(link, { unencrypted_message: encodePlainText(part) })
              }
            }))).pipe(Effect.catchTag("NoAnswer", (e) => Effect.fail(noAnswer(peer, e, false))))
        }
        yield* history.setState(id, peer.key, "sent").pipe(
          Effect.mapError((e) =>
            new SendError({ reason: "Storage", message: `sent to ${peer.username}, but could not record it: ${e.message}` })
          )
        )
      })

    const fromField: { readonly from?: string } = config.name !== undefined ? { from: config.name } : {}

    const unknownUser = (username: string) =>
      new SendError({ reason: "UnknownUser", message: `no user '${username}' is online; 'users' lists who is` })

    /**
     * Stores the messages kept in memory, oldest first, stopping at the first failure; how
     * many got stored. Each one stored is an ordinary pending message from then on.
     */
    const storeUnstored: Effect.Effect<number> = unstoredLock.withPermit(Effect.uninterruptible(Effect.gen(function*() {
      let stored = 0
      let problem: string | undefined
      while (unstored.length > 0) {
        const m = unstored[0]!
        const ok = yield* history.recordSent(m).pipe(
          Effect.as(true),
          Effect.catch((e) => Effect.sync(() => (problem = unstoredProblem = e.message, false)))
        )
        if (!ok) break
        unstored.shift()
        stored++
      }
      if (stored > 0) {
        const message = `${stored} message(s) kept in memory are stored now, and are sent as pending messages` +
          (unstored.length > 0 ? ` (${unstored.length} still wait: ${problem})` : "")
        yield* Effect.logInfo(`initiator: ${message}`)
        yield* events.publish({ event: "info", message })
      } else if (problem !== undefined) {
        yield* Effect.logDebug(`initiator: ${unstored.length} message(s) still cannot be stored: ${problem}`)
      }
      return stored
    })))

    /** What the user can do about a failed store, from SQLite's words. */
    const storageAdvice = (problem: string): string =>
      /full/i.test(problem)
        ? "free some disk space"
        : /locked|busy/i.test(problem)
        ? "another program holds the database's write lock; stop it"
        : `fix the permissions of the data dir (${config.dataDir}) and its database`

    /**
     * After a failed store: keeps a message to a p2pchat peer in memory (bounded) and fails
     * with what happened; a message to a classic peer, or one over the bound, is refused.
     */
    const keepUnstored = (m: UnstoredMessage, classicPeer: boolean, problem: string): Effect.Effect<never, SendError> =>
      Effect.gen(function*() {
        if (classicPeer) {
          return yield* new SendError({
            reason: "Storage",
            message: `could not store the message, not sent (${problem}); classic peers get one attempt, so it is not ` +
              `kept: send it again once the disk has room or the data dir is writable`
          })
        }
        if (unstored.length >= config.maxUnstoredMessages) {
          return yield* new SendError({
            reason: "Storage",
            message: `could not store the message, not sent and not kept (${problem}): ${unstored.length} messages ` +
              `already wait in memory until they can be stored, the most kept; ${storageAdvice(problem)}`
          })
        }
        unstored.push(m)
        const message = `could not store the message to ${m.username} (${problem}): kept in memory until it can be ` +
          `stored, then sent (${unstored.length} message(s) wait); it is lost if p2pchat exits before that: ` +
          storageAdvice(problem)
        yield* Effect.logWarning(`initiator: ${message}`)
        yield* events.publish({ event: "warning", message })
        return yield* new SendError({ reason: "Storage", message })
      })

    const send = (username: string, text: string, mode?: SendMode): Effect.Effect<SendResult, SendError> =>
      Effect.gen(function*() {
        const found = yield* registry.lookup(username)
        if (Option.isNone(found)) return yield* unknownUser(username)
        const peer = found.value
        const p2p = peer.proto === "p2pchat/1"
        const chosen: SendMode = mode ?? (p2p ? (peer.id !== undefined ? "secure" : "plain") : "classic")
        if (chosen === "secure" && !p2p) {
          return yield* new SendError({
            reason: "Unsupported",
            message: `${peer.username} runs a classic chat program, which has no secure sessions: ` +
              `only classic (its old 3DES dialect, which is NOT secure) or unsecure (plain text) are possible ` +
              `(send --classic or --plain; in a chat, answer secure for classic, unsecure for plain)`
          })
        }
        if (chosen === "secure" && config.name === undefined) {
          return yield* new SendError({
            reason: "Refused",
            message: "a secure session proves your username to the peer, and this node has none; start it with --name"
          })
        }
        const historyMode: Mode = chosen === "secure" ? "noise" : chosen === "plain" ? "plain" : "classic-3des"
        const id = randomUUID()
        const at = new Date(yield* Clock.currentTimeMillis)
        if (chosen === "secure") {
          const bytes = secureInnerBytes({ type: "msg", id, text, sentAt: at.toISOString() })
          if (bytes > MAX_INNER_BYTES) {
            return yield* new SendError({
              reason: "Refused",
              message: `the message is too long for one secure frame (${bytes} bytes, at most ${MAX_INNER_BYTES}); ` +
                `split it into shorter messages`
            })
          }
        } else if (p2p) {
          const bytes = p2pFrameBytes(text, chosen === "classic", id, fromField.from)
          if (bytes > MAX_FRAME_BYTES) {
            return yield* new SendError({
              reason: "Refused",
              message: `the message is too long for one frame (${bytes} bytes on the wire, at most ${MAX_FRAME_BYTES}); ` +
                `split it into shorter messages`
            })
          }
        }
        const message: UnstoredMessage = { id, peer: peer.key, text, at, mode: historyMode, username: peer.username }
        // Messages kept in memory go first, so that the history keeps the order they were written in.
        if (p2p && unstored.length > 0) {
          // Stored now: they go at once, as pending messages do.
          if ((yield* storeUnstored) > 0) yield* Effect.forkIn(retryPending(), layerScope)
          if (unstored.length > 0) return yield* keepUnstored(message, false, unstoredProblem)
        }
        yield* history.recordSent(message).pipe(
          Effect.catch((e) => keepUnstored(message, !p2p, e.message))
        )
        if (chosen === "classic") yield* events.publish({ event: "warning", message: CLASSIC_WARNING })
        if (p2p) {
          const dialect = chosen === "secure" ? "p2p-noise" : chosen === "plain" ? "p2p-plain" : "p2p-classic"
          yield* deliverP2p(peer, id, text, dialect, at.toISOString())
          return { id, peer: peer.username, mode: historyMode, state: "delivered" as const }
        }
        yield* deliverClassic(peer, id, text, chosen === "classic")
        return { id, peer: peer.username, mode: historyMode, state: "sent" as const }
      })

    /**
     * Whether secure messages to `peer` must wait for the user: it announces a key other
     * than the one pinned for its name (they go once the user runs `trust`). Told once per key.
     */
    const waitsForTrust = (peer: Peer, count: number) =>
      Effect.gen(function*() {
        if (peer.id === undefined) return false
        const pin = yield* history.getPin(peer.key).pipe(Effect.orElseSucceed(() => Option.none<Uint8Array>()))
        if (Option.isNone(pin) || keyId(pin.value) === peer.id) return false
        const told = `${peer.key}\u0000${peer.id}`
        if (!toldBlocked.has(told)) {
          toldBlocked.add(told)
          const message = `${count} secure message(s) to ${peer.username} wait: ${peer.username} now announces a key with ` +
            `fingerprint ${fingerprint(idToBytes(peer.id))}, not the pinned ${fingerprint(pin.value)}. Someone may be ` +
            `impersonating ${peer.username}. Compare fingerprints with ${peer.username}, then \`trust ${peer.username}\` ` +
            `(or \`p2pchat trust ${peer.username}\`) to send them`
          yield* Effect.logWarning(`initiator: ${message}`)
          yield* events.publish({ event: "warning", message })
        }
        return true
      })

    /** Pending messages to one online p2pchat peer, in order, stopping at the first failure. */
    const retryPeer = (peer: Peer, all: ReadonlyArray<HistoryEntry>) =>
      Effect.gen(function*() {
        let delivered = 0
        // One being sent now is left to that attempt (which keeps it pending if it fails).
        const busy = new Set(all.filter((e) => inFlight.has(e.id)).map((e) => e.id))
        let entries = all.filter((e) => !busy.has(e.id))
        const secureCount = entries.filter((e) => e.mode === "noise").length
        if (secureCount > 0 && (yield* waitsForTrust(peer, secureCount))) {
          entries = entries.filter((e) => e.mode !== "noise")
        }
        for (const entry of entries) {
          if (inFlight.has(entry.id)) continue
          const dialect = entry.mode === "noise" ? "p2p-noise" as const : entry.mode === "plain" ? "p2p-plain" as const : "p2p-classic" as const
          const ok = yield* deliverP2p(peer, entry.id, entry.text, dialect, entry.at).pipe(
            Effect.as(true),
            Effect.catch((e) => Effect.as(Effect.logInfo(`initiator: pending messages to ${peer.username} wait: ${e.message}`), false))
          )
          if (!ok) break
          delivered++
        }
        return delivered
      })

    const retryPending = (username?: string): Effect.Effect<number> =>
      Effect.gen(function*() {
        // What waits in memory is stored first (and then sent with the rest).
        if (unstored.length > 0) yield* storeUnstored
        const pending = yield* history.pendingFor(username === undefined ? undefined : usernameKey(username)).pipe(
          Effect.catch((e) => Effect.as(Effect.logWarning(`initiator: cannot read pending messages: ${e.message}`), []))
        )
        // Expired ones stay in the history as pending, and are not sent any more.
        const now = yield* Clock.currentTimeMillis
        const byPeer = new Map<string, Array<HistoryEntry>>()
        for (const entry of pending) {
          const age = now - Date.parse(entry.at)
          if (!(age <= pendingExpiryMs)) continue
          const list = byPeer.get(entry.peer)
          if (list === undefined) byPeer.set(entry.peer, [entry])
          else list.push(entry)
        }
        let delivered = 0
        for (const [key, entries] of byPeer) {
          const peer = yield* registry.lookup(key)
          if (Option.isNone(peer) || peer.value.proto !== "p2pchat/1" || peer.value.status !== "online") continue
          if (retrying.has(key)) continue
          retrying.add(key)
          delivered += yield* retryPeer(peer.value, entries).pipe(Effect.ensuring(Effect.sync(() => void retrying.delete(key))))
        }
        return delivered
      })

    const close = (username?: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const key = username === undefined ? undefined : usernameKey(username)
        const victims = [...links.values()].filter((l) => key === undefined || l.peerKey === key)
        return Effect.forEach(victims, (l) => dropLink(l, "closed by the user"), { discard: true })
      })

    // A peer that comes back (or moves) gets its pending messages; one that leaves, its
    // connections closed.
    const onChange = (change: RegistryChange) => {
      const peer = change.peer
      switch (change._tag) {
        case "Appeared":
        case "StatusChanged":
        case "Moved": {
          const reset = change._tag === "Moved" ? close(peer.key) : Effect.void
          if (peer.status !== "online" || peer.proto !== "p2pchat/1") return reset
          return Effect.andThen(reset, Effect.forkIn(retryPending(peer.key), layerScope))
        }
        case "Heard":
          // PROTOCOL.md 3: pending messages go when the peer announces again, also after an
          // outage too short for it to be seen away. The pending lookup is one indexed query.
          return peer.status === "online" && peer.proto === "p2pchat/1"
            ? Effect.forkIn(retryPending(peer.key), layerScope)
            : Effect.void
        case "Expired":
        case "Left":
          classicLastWrite.delete(peer.key)
          return close(peer.key)
        case "Conflict":
          return Effect.void
      }
    }
    const changes = yield* registry.changes
    yield* Effect.forkScoped(Stream.runForEach(changes, (c) => Effect.asVoid(onChange(c))))
    // The first sweep waits one interval: a one-shot `send` ends long before it.
    const retryEveryMs = tuning.retryEveryMs ?? RETRY_EVERY_MS
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(retryEveryMs), retryPending())))
    yield* Effect.addFinalizer(() => close())

    return { send, retryPending, close, unstored: Effect.sync(() => [...unstored]) }
  })
)
