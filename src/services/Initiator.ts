/**
 * Opens chats to peers and sends messages (PROTOCOL.md 2 and 3). A message is stored as
 * pending first, then sent; a p2pchat peer acks it once stored, and it becomes delivered.
 * Pending messages are sent again, with the same id, when their peer announces again.
 *
 * Connections are kept per (peer, dialect) as "links": one reader fiber per link routes
 * acks and key answers to whoever waits for them, so sends can be pipelined. A dialect is
 * how frames are written on a link:
 *   p2p-plain    unencrypted_message + id + from, acked              (a p2pchat peer)
 *   p2p-classic  one key exchange per link, encrypted_message + id + from, acked
 *   classic-*    a classic peer: one frame per write, at most 1024 bytes, 100 ms apart,
 *                a long text split into several messages, a key exchange before every
 *                encrypted message, no id, no acks, no retries
 * A secure (Noise) link will be one more dialect: a handshake when the link opens, then
 * `ct` frames both ways, the reader fiber decrypting acks before it routes them.
 */
import { Clock, Context, Data, Deferred, Effect, Exit, Layer, Option, Scope, Semaphore, Stream } from "effect"
import { randomUUID } from "node:crypto"
import { CLASSIC_WARNING, classicEncrypt, classicKey24, classicShared, randomClassicKey } from "../domain/Classic.ts"
import { encodePlainText } from "../domain/Frames.ts"
import { encodeFrame, MAX_FRAME_BYTES } from "../domain/Framing.ts"
import type { Peer } from "../domain/Peer.ts"
import { usernameKey } from "../domain/Presence.ts"
import { Config } from "./Config.ts"
import { dial, type FrameChannel } from "./Connection.ts"
import { Events } from "./Events.ts"
import { History, type HistoryEntry, type Mode } from "./History.ts"
import { PeerRegistry, type RegistryChange } from "./PeerRegistry.ts"

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
  readonly reason: "UnknownUser" | "Unreachable" | "Timeout" | "Storage" | "Refused" | "Unsupported"
  readonly message: string
}> {}

export class Initiator extends Context.Service<Initiator, {
  /** Sends one message; `mode` defaults to the best the peer speaks. */
  readonly send: (username: string, text: string, mode?: SendMode) => Effect.Effect<SendResult, SendError>
  /** Resends pending messages to online p2pchat peers (with their ids); how many got delivered. */
  readonly retryPending: (username?: string) => Effect.Effect<number>
  /** Closes the connections to a peer, or to every peer. */
  readonly close: (username?: string) => Effect.Effect<void>
}>()("p2pchat/Initiator") {}

/** Timers of the initiator; tests shorten them. */
export interface InitiatorTuning {
  /** How long a p2pchat peer has to ack a message (and any peer to answer a key). */
  readonly ackTimeoutMs: number
  readonly connectTimeoutMs: number
  /** The pause between two frames to a classic peer (PROTOCOL.md "Writing to a classic peer"). */
  readonly classicPauseMs: number
}

export const DEFAULT_TUNING: InitiatorTuning = { ackTimeoutMs: 5000, connectTimeoutMs: 5000, classicPauseMs: 100 }

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

// ---------------------------------------------------------------------------------------------
// Links

type Dialect = "p2p-plain" | "p2p-classic" | "classic-plain" | "classic-3des"

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
  open: boolean
}

const monotonicMillis = Effect.map(Clock.monotonicTimeNanos, (n) => Number(n / 1_000_000n))

export const initiatorLayer: Layer.Layer<Initiator, never, Config | History | Events | PeerRegistry> = Layer.effect(
  Initiator,
  Effect.gen(function*() {
    const config = yield* Config
    const history = yield* History
    const events = yield* Events
    const registry = yield* PeerRegistry
    const tuning = yield* InitiatorTuning
    const layerScope = yield* Effect.scope

    const links = new Map<string, Link>()
    /** Links being opened: concurrent sends to one peer share one connection. */
    const opening = new Map<string, Deferred.Deferred<Link, SendError>>()
    /** Ids being sent now, so a retry does not race the first attempt. */
    const inFlight = new Set<string>()
    /** Monotonic ms of the last frame written to each classic peer (the pause is per peer). */
    const classicLastWrite = new Map<string, number>()
    /** Peers whose pending messages are being retried now. */
    const retrying = new Set<string>()

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
              message: `cannot reach ${peer.username}: ${e.message}` +
                (isClassicPeerDialect(dialect) ? "" : `; the message is kept and sent again when ${peer.username} announces`)
            })
          )
        )
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
          open: true
        }
        links.set(cacheKey, link)
        yield* Effect.forkIn(pump(link), layerScope)
        return link
      })

    /** The open link to a peer in a dialect, dialing when there is none. */
    const getLink = (peer: Peer, dialect: Dialect): Effect.Effect<Link, SendError> =>
      Effect.suspend(() => {
        const cacheKey = `${peer.key}\u0000${dialect}`
        const cached = links.get(cacheKey)
        if (cached !== undefined && cached.open) {
          if (cached.target === `${peer.address}:${peer.port}`) return Effect.succeed(cached)
          return Effect.andThen(dropLink(cached, "the peer moved"), getLink(peer, dialect))
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

    /** To a p2pchat peer: one frame with id and from, then the ack. */
    const deliverP2p = (peer: Peer, id: string, text: string, dialect: "p2p-plain" | "p2p-classic") =>
      Effect.gen(function*() {
        inFlight.add(id)
        yield* withLink(peer, dialect, (link) =>
          Effect.gen(function*() {
            let frame: object
            if (dialect === "p2p-classic") {
              const key24 = link.key24 ?? (yield* link.lock.withPermit(
                Effect.suspend(() =>
                  link.key24 !== undefined
                    ? Effect.succeed(link.key24)
                    : Effect.tap(keyExchange(link, (f) => write(link, f)), (k) => Effect.sync(() => void (link.key24 = k)))
                )
              ))
              frame = { encrypted_message: classicEncrypt(key24, text), id, ...fromField }
            } else {
              frame = { unencrypted_message: encodePlainText(text), id, ...fromField }
            }
            let ack = link.acks.get(id)
            if (ack === undefined) {
              ack = Deferred.makeUnsafe<void, LinkLost>()
              link.acks.set(id, ack)
            }
            const waiter = ack
            yield* write(link, frame)
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

    const send = (username: string, text: string, mode?: SendMode): Effect.Effect<SendResult, SendError> =>
      Effect.gen(function*() {
        const found = yield* registry.lookup(username)
        if (Option.isNone(found)) return yield* unknownUser(username)
        const peer = found.value
        const p2p = peer.proto === "p2pchat/1"
        const chosen: SendMode = mode ?? (p2p ? "plain" : "classic")
        if (chosen === "secure") {
          return yield* new SendError({
            reason: "Unsupported",
            message: p2p
              ? "secure sessions are not built yet; send with --plain or --classic"
              : `${peer.username} is a classic peer: secure sessions need p2pchat on both ends; send with --plain or --classic`
          })
        }
        const historyMode: Mode = chosen === "plain" ? "plain" : "classic-3des"
        const id = randomUUID()
        if (p2p) {
          const bytes = p2pFrameBytes(text, chosen === "classic", id, fromField.from)
          if (bytes > MAX_FRAME_BYTES) {
            return yield* new SendError({
              reason: "Refused",
              message: `the message is too long for one frame (${bytes} bytes on the wire, at most ${MAX_FRAME_BYTES}); ` +
                `split it into shorter messages`
            })
          }
        }
        const at = new Date(yield* Clock.currentTimeMillis)
        yield* history.recordSent({ id, peer: peer.key, text, at, mode: historyMode }).pipe(
          Effect.mapError((e) => new SendError({ reason: "Storage", message: `could not store the message, not sent: ${e.message}` }))
        )
        if (chosen === "classic") yield* events.publish({ event: "warning", message: CLASSIC_WARNING })
        if (p2p) {
          yield* deliverP2p(peer, id, text, chosen === "plain" ? "p2p-plain" : "p2p-classic")
          return { id, peer: peer.username, mode: historyMode, state: "delivered" as const }
        }
        yield* deliverClassic(peer, id, text, chosen === "classic")
        return { id, peer: peer.username, mode: historyMode, state: "sent" as const }
      })

    /** Pending messages to one online p2pchat peer, in order, stopping at the first failure. */
    const retryPeer = (peer: Peer, entries: ReadonlyArray<HistoryEntry>) =>
      Effect.gen(function*() {
        let delivered = 0
        for (const entry of entries) {
          if (inFlight.has(entry.id)) continue
          if (entry.mode === "noise") continue // secure sessions are not built yet
          const dialect = entry.mode === "plain" ? "p2p-plain" as const : "p2p-classic" as const
          const ok = yield* deliverP2p(peer, entry.id, entry.text, dialect).pipe(
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
        const pending = yield* history.pendingFor(username === undefined ? undefined : usernameKey(username)).pipe(
          Effect.catch((e) => Effect.as(Effect.logWarning(`initiator: cannot read pending messages: ${e.message}`), []))
        )
        const byPeer = new Map<string, Array<HistoryEntry>>()
        for (const entry of pending) {
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
        case "Expired":
        case "Left":
          return close(peer.key)
        case "Conflict":
          return Effect.void
      }
    }
    const changes = yield* registry.changes
    yield* Effect.forkScoped(Stream.runForEach(changes, (c) => Effect.asVoid(onChange(c))))
    yield* Effect.addFinalizer(() => close())

    return { send, retryPending, close }
  })
)
