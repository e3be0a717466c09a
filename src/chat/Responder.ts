/**
 * The chat server (protocol: "The chat connection"): accepts many connections at once, one
 * fiber each, and serves every dialect on the same port. The first frame picks the
 * session: `hs` opens a secure one (dialects/noise), anything else the classic and plain
 * dialects (dialects/legacy.ts). Each message the session delivers goes to the Inbox; bad
 * input ends that connection only, with a logged and counted reason.
 *
 * Limits (NodeConfig; each logged once as a warning when it first bites, then at most once
 * a minute as a summary, and counted in the stats every time):
 *   maxConnectionsPerAddress
 *                        connections open at once from one source address (64); one more
 *                        is closed at once, unread (refusedPerAddress), and makes no room.
 *   maxConnections       connections open at once (1,024). At the cap a new connection is
 *                        closed at once, in order and unread, unless a connection can be
 *                        closed to make room (evictedAtCap): the oldest that has not
 *                        completed its first frame (or handshake), or else the established
 *                        session that is not secure and completed its last frame longest
 *                        ago, if that was at least firstFrameTimeoutMs ago. A secure session
 *                        is never closed for a newcomer. So neither a crowd of silent
 *                        connections nor one of idle plain sessions (one `{"key":1}` frame
 *                        each) can lock real peers out. A p2pchat sender keeps its message
 *                        pending and retries later.
 *   firstFrameTimeoutMs  a connection must complete its first frame, and a secure one its
 *                        whole handshake, this soon after it opens (10 s).
 *   idleTimeoutMs        a secure session that completes no frame for this long is closed (5 min).
 *   idleTimeoutPlainMs   a session that is not secure, likewise (30 s; never more than idleTimeoutMs).
 *   maxFrameBytes        one incomplete frame is buffered up to 64 KiB; one byte more ends
 *                        the connection (FrameTooLarge).
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { FILE_PROTO } from "../domain/FileWire.ts"
import type { HandshakeFrame } from "../domain/Frames.ts"
import { usernameKey } from "../domain/Presence.ts"
import type { IncomingSession } from "../dialects/Dialect.ts"
import * as Legacy from "../dialects/legacy.ts"
import { type SessionError, transportCause } from "../dialects/noise/channel.ts"
import * as Noise from "../dialects/noise/index.ts"
import { Config } from "../services/Config.ts"
import { Crypto, keyId } from "../services/Crypto.ts"
import { Events } from "../services/Events.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import type { HistoryError } from "../services/History.ts"
import { Transfers } from "../transfer/Transfers.ts"
import { type Accepted, type FrameChannel, Transport } from "../transport/Transport.ts"
import { Trust } from "../trust/Trust.ts"
import { ConnectionEnded, endOf, isBadInput } from "./ConnectionEnded.ts"
import { Inbox, type Inbound } from "./Inbox.ts"
import { lookAlikeWarning, tellOnce } from "./NameWatch.ts"
import { type Conn, makeLimits } from "./Limits.ts"
import { type LimitStats, Stats, type StatsSnapshot } from "./Stats.ts"

export interface ResponderStats {
  readonly accepted: number
  readonly active: number
  /** Secure sessions accepted. */
  readonly sessionsIn: number
  readonly received: number
  readonly duplicates: number
  readonly rejected: number
  readonly rejectedByReason: Readonly<Record<string, number>>
  readonly storageFailures: number
  readonly peakActive: number
  readonly limits: LimitStats
}

export class ResponderError extends Data.TaggedError("ResponderError")<{ readonly message: string; readonly cause?: unknown }> {}

export class Responder extends Context.Service<Responder, {
  /** The bound TCP port (the configured one, or the OS's choice for port 0). */
  readonly port: number
  readonly stats: Effect.Effect<ResponderStats>
}>()("p2pchat/Responder") {}

/** What serving a connection needs. */
const Deps = Effect.gen(function*() {
  return {
    config: yield* Config,
    events: yield* Events,
    registry: yield* PeerRegistry,
    crypto: yield* Crypto,
    trust: yield* Trust,
    inbox: yield* Inbox,
    stats: yield* Stats,
    limits: yield* makeLimits,
    /** The file server, in a node's receiving side (without it, file sessions are refused). */
    transfers: yield* Effect.serviceOption(Transfers),
    /** Refused sessions (name and key) the user has been shown: each once, not on every retry. */
    told: new Set<string>()
  }
})
type Deps = Effect.Success<typeof Deps>

/**
 * The announced key a secure session claiming `name` must match, if any. The proven key wins:
 * a pinned name is decided by its pin alone (Trust.verifySession), whatever is announced; an
 * unpinned one only by a signed announcement (an unsigned one may be anyone's, and must not
 * lock the real peer out).
 */
const rivalKeyId = (registry: Deps["registry"], trust: Deps["trust"], name: string) =>
  Effect.gen(function*() {
    const pinned = yield* trust.pinned(name).pipe(Effect.orElseSucceed(() => Option.none()))
    if (Option.isSome(pinned)) return undefined
    const peer = yield* registry.lookup(name)
    return Option.isSome(peer) && peer.value.signed ? peer.value.id : undefined
  })

/** A p2pchat/1 secure session (Noise XX), opened by handshake message 1. */
const secure = (deps: Deps, ch: FrameChannel, first: HandshakeFrame) =>
  handshake(deps, ch, (name, options) => Noise.accept(ch, first, name, options))

/** A file session's handshake (protocol.md 9.2: proto `p2pchat-file/1`), with the same checks. */
const fileKeys = (deps: Deps, ch: FrameChannel, first: HandshakeFrame) =>
  handshake(deps, ch, (name, options) => Noise.acceptFile(ch, first, name, options))

/** The responder's half of a Noise XX handshake (`run`), with the name to prove and the trust checks. */
const handshake = <A>(
  { config, crypto, events, registry, trust }: Deps,
  ch: FrameChannel,
  run: (ownName: string, options: Noise.AcceptOptions) => Effect.Effect<A, SessionError | HistoryError, Crypto | Trust>
) =>
  Effect.gen(function*() {
    const ownName = config.name
    if (ownName === undefined) {
      return yield* new ConnectionEnded({
        reason: "Unsupported",
        message: "refused a secure session: this node has no username to prove in the handshake (start it with --name)"
      })
    }
    return yield* run(ownName, {
      // the deadline of the connection rules; this is a backstop
      timeout: config.firstFrameTimeoutMs + 1000,
      announcedKeyId: (name) => rivalKeyId(registry, trust, name)
    }).pipe(
      Effect.provideService(Crypto, crypto),
      Effect.provideService(Trust, trust),
      Effect.catchTag("HistoryError", (e) =>
        Effect.gen(function*() {
          const message = `secure session from ${ch.label} refused: cannot check its pinned key: ${e.message}`
          yield* Effect.logError(`responder: ${message}`)
          yield* events.publish({ event: "error", message })
          return yield* new ConnectionEnded({ reason: "Io", message, cause: e })
        }))
    )
  })

/** The session the first frame opens; a secure one once its handshake is done. */
const open = (deps: Deps, ch: FrameChannel, conn: Conn, seen: { secure: boolean }) =>
  Effect.gen(function*() {
    const first = yield* ch.next.pipe(
      Effect.mapError((e) => new ConnectionEnded({ reason: e.reason, message: e.message, cause: e })),
      deps.limits.byDeadline(conn, "a first frame was")
    )
    if (first._tag !== "Handshake") return Legacy.accept(ch, first)
    seen.secure = true
    if (first.frame.proto === FILE_PROTO) {
      return { file: yield* fileKeys(deps, ch, first.frame).pipe(deps.limits.byDeadline(conn, "the file session's handshake was")) }
    }
    const session = yield* secure(deps, ch, first.frame).pipe(deps.limits.byDeadline(conn, "the secure handshake was"))
    const { username, fingerprint } = session.proven!
    yield* deps.stats.add("sessionsIn")
    yield* Effect.logInfo(`responder: secure session from ${username} (${ch.label}), fingerprint ${fingerprint}`)
    yield* deps.events.publish({ event: "info", message: `secure session from ${username}, fingerprint ${fingerprint}` })
    const lookAlike = yield* lookAlikeWarning(deps.registry, deps.trust, username)
    if (lookAlike !== undefined && tellOnce(deps.told, `look ${usernameKey(username)}`)) {
      yield* Effect.logWarning(`responder: ${lookAlike}`)
      yield* deps.events.publish({ event: "warning", message: lookAlike })
    }
    return session
  })

/** `ch`, with each frame it completes noted as activity of `conn` (who goes first at the cap). */
const tracked = ({ limits }: Deps, ch: FrameChannel, conn: Conn): FrameChannel => ({
  ...ch,
  next: Effect.tap(ch.next, () => limits.touched(conn))
})

/** Serves one connection: its session's messages go to the Inbox until it ends. */
const serve = (deps: Deps, ch: FrameChannel, conn: Conn) => {
  const seen = { secure: false }
  return Effect.gen(function*() {
    const opened = yield* open(deps, ch, conn, seen)
    yield* deps.limits.established(conn, seen.secure)
    if ("file" in opened) return yield* serveFile(deps, ch, opened.file)
    const session: IncomingSession = opened
    const proven = session.proven?.username
    const inbound: Inbound = {
      session,
      label: ch.label,
      who: proven,
      sender: proven !== undefined
        ? () => Effect.succeed({ name: proven, key: usernameKey(proven) })
        : deps.inbox.unprovenSender(ch.address)
    }
    const next = session.receive.pipe(deps.limits.beforeIdle(conn))
    for (;;) yield* deps.inbox.handle(inbound, yield* next)
  }).pipe(
    Effect.catchTag("SessionError", (e) =>
      Effect.andThen(
        // A secure session that failed by itself (not by its connection) is news for the user.
        seen.secure && transportCause(e) === undefined && firstTelling(deps.told, e)
          ? deps.events.publish({ event: "warning", message: `secure session from ${ch.label}: ${e.message}` })
          : Effect.void,
        Effect.fail(endOf(e))
      ))
  )
}

/** A file session (protocol.md 9): served by Transfers until it ends; its own timeouts apply, not the idle one. */
const serveFile = (deps: Deps, ch: FrameChannel, keys: Noise.Completed) =>
  Effect.gen(function*() {
    if (Option.isNone(deps.transfers)) {
      return yield* new ConnectionEnded({ reason: "Unsupported", message: "refused a file session: this role serves no files" })
    }
    yield* Effect.logDebug(`responder: file session from ${keys.peer.username} (${ch.label})`)
    yield* deps.transfers.value.serve(ch, keys)
  })

/**
 * Whether the user is to be shown this failure: a refused changed key once per name and key
 * (a peer retries every 30 s; the log and the stats still count each), anything else always.
 */
const firstTelling = (told: Set<string>, e: SessionError): boolean =>
  e.reason !== "KeyChanged" || e.username === undefined || e.presentedKey === undefined ||
  tellOnce(told, `${usernameKey(e.username)}\u0000${keyId(e.presentedKey)}`)

/** Logs and counts how a connection ended. */
const ended = ({ stats, limits }: Deps, conn: Conn, e: ConnectionEnded) =>
  Effect.gen(function*() {
    if (conn.evicted) return yield* Effect.logDebug(`responder: connection from ${conn.label} closed to make room (connection cap)`)
    if (!isBadInput(e.reason)) return yield* Effect.logDebug(`responder: connection from ${conn.label} ended: ${e.message}`)
    yield* stats.reject(e.reason)
    if (e.reason === "FrameTooLarge") yield* limits.bite("frameTooLarge", conn.label)
    yield* Effect.logWarning(`responder: dropped connection from ${conn.label}: ${e.message}`)
  })

const responderStats = (s: StatsSnapshot): ResponderStats => ({
  accepted: s.accepted,
  active: s.active,
  sessionsIn: s.sessionsIn,
  received: s.received,
  duplicates: s.duplicates,
  rejected: s.rejected,
  rejectedByReason: s.rejectedByReason,
  storageFailures: s.storageFailures,
  peakActive: s.peakActive,
  limits: s.limits
})

export const make = Effect.gen(function*() {
  const deps = yield* Deps
  const { config } = deps
  const onConnection = (accepted: Accepted) =>
    deps.limits.admit(accepted, (conn) =>
      Effect.gen(function*() {
        const ch = yield* accepted.open(config.maxFrameBytes)
        yield* Effect.logDebug(`responder: connection from ${ch.label}`)
        yield* serve(deps, tracked(deps, ch, conn), conn).pipe(Effect.catch((e) => ended(deps, conn, e)))
      }).pipe(Effect.catch((e) => Effect.logDebug(`responder: ${e.message}`))))

  const host = config.bind ?? "0.0.0.0"
  const port = yield* (yield* Transport).serve({ host, port: config.tcpPort }, onConnection).pipe(
    Effect.mapError((e) => new ResponderError({ message: e.message, cause: e }))
  )
  yield* Effect.logInfo(`responder: listening on TCP ${host}:${port}`)
  return Responder.of({ port, stats: Effect.map(deps.stats.snapshot, responderStats) })
})

export const layer = Layer.effect(Responder, make)
