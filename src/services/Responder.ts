/**
 * The chat server (PROTOCOL.md 2): accepts many connections at once, one fiber each, and
 * serves the classic dialect and the p2pchat/1 additions on the same port. A message is
 * stored before it is acked; bad input ends that connection only, with a logged reason.
 *
 * The first frame picks the session: `hs` opens a secure session (Noise XX with trust on
 * first use, SecureSession.ts); anything else is the classic/plain session, which keeps the
 * classic key per connection.
 *
 * Limits (NodeConfig; each logged once as a warning when it first bites, then at most once
 * a minute as a summary, and counted in `stats.limits` every time):
 *   maxConnections       connections open at once (1,024). At the cap a new connection is
 *                        accepted and closed at once: Node cannot stop accepting without
 *                        closing the listening socket, and holding a connection unserved
 *                        costs a file descriptor each, without bound. To make room the
 *                        responder closes the oldest connection that has not completed its
 *                        first frame (or handshake) yet, so that a crowd of silent
 *                        connections cannot lock real peers out; only when every open
 *                        connection is an established session is the newcomer closed.
 *                        The close is an orderly one (FIN; no frame is written, since the
 *                        protocol has none for "busy" and a classic peer would misread one):
 *                        a p2pchat sender keeps its message pending and retries later.
 *   firstFrameTimeoutMs  a connection must complete its first frame, and a secure one its
 *                        whole handshake, this soon after it opens (10 s): a silent
 *                        connection and a slow-loris trickling bytes are closed alike.
 *   idleTimeoutMs        a session that completes no frame for this long is closed (5 min);
 *                        bytes that never complete a frame do not count.
 *   maxFrameBytes        one incomplete frame is buffered up to 64 KiB; one byte more ends
 *                        the connection (FrameTooLarge), and the socket is read only as
 *                        frames are needed (Connection.ts channelOf), so nothing else piles up.
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { NetAddress } from "effect/net"
import type { Socket } from "effect/socket"
import { randomUUID } from "node:crypto"
import { classicDecrypt, classicKey24, classicShared, randomClassicKey } from "../domain/Classic.ts"
import { type Frame, type HandshakeFrame, plainText } from "../domain/Frames.ts"
import { usernameKey } from "../domain/Presence.ts"
import { Config, type NodeConfig } from "./Config.ts"
import {
  acceptedChannel,
  ConnectionEnded,
  type EndReason,
  type FrameChannel,
  isBadInput,
  normalizeAddress,
  sessionIO
} from "./Connection.ts"
import { Crypto } from "./Crypto.ts"
import { Events } from "./Events.ts"
import { History, type HistoryError, type Mode } from "./History.ts"
import { PeerRegistry } from "./PeerRegistry.ts"
import { acceptTrusted, SessionError, type SessionErrorReason } from "./SecureSession.ts"

export interface ResponderStats {
  /** Connections accepted since start. */
  readonly accepted: number
  /** Connections open now. */
  readonly active: number
  /** Messages stored (new ids only). */
  readonly received: number
  /** Messages whose id was already stored (a retry): acked, not shown again. */
  readonly duplicates: number
  /** Connections ended because the peer sent something wrong. */
  readonly rejected: number
  /** `rejected`, by reason (NotJson, FrameTooLarge, BadFrame, ClosedMidFrame, NoKey, ...). */
  readonly rejectedByReason: Readonly<Record<string, number>>
  /** Messages that could not be stored (not acked). */
  readonly storageFailures: number
  /** The most connections open at once since start. */
  readonly peakActive: number
  /** How often each limit bit (see the top of this file). */
  readonly limits: ResponderLimitStats
}

export interface ResponderLimitStats {
  /** New connections closed at once: maxConnections were open, all established sessions. */
  readonly refusedAtCap: number
  /** Connections closed to make room for a new one: the oldest still without a first frame. */
  readonly evictedAtCap: number
  /** Connections closed for completing no frame (or no handshake) within firstFrameTimeoutMs. */
  readonly firstFrameTimeout: number
  /** Sessions closed after idleTimeoutMs without a frame. */
  readonly idleTimeout: number
  /** Connections ended for a frame larger than maxFrameBytes (also in rejectedByReason.FrameTooLarge). */
  readonly frameTooLarge: number
}

export type LimitName = keyof ResponderLimitStats

const LIMIT_TEXT: Record<LimitName, (c: NodeConfigLimits) => string> = {
  refusedAtCap: (c) => `connection cap (${c.maxConnections} open connections, all sessions): new connections closed at once`,
  evictedAtCap: (c) =>
    `connection cap (${c.maxConnections} open connections): the oldest connection without a first frame closed to make room`,
  firstFrameTimeout: (c) => `no frame or handshake completed within ${c.firstFrameTimeoutMs / 1000} s: connection closed`,
  idleTimeout: (c) => `no frame for ${c.idleTimeoutMs / 1000} s: idle session closed`,
  frameTooLarge: (c) => `frame larger than ${c.maxFrameBytes} bytes: connection closed`
}

type NodeConfigLimits = Pick<NodeConfig, "maxConnections" | "firstFrameTimeoutMs" | "idleTimeoutMs" | "maxFrameBytes">

/** A limit that keeps biting is summarised in the log at most this often. */
export const LIMIT_LOG_EVERY_MS = 60_000

export class ResponderError extends Data.TaggedError("ResponderError")<{ readonly message: string }> {}

export class Responder extends Context.Service<Responder, {
  /** The bound TCP port (the configured one, or the OS's choice for port 0). */
  readonly port: number
  readonly stats: Effect.Effect<ResponderStats>
}>()("p2pchat/Responder") {}

const errnoOf = (cause: unknown): string =>
  typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : ""

const listenProblem = (cause: unknown, host: string, port: number): string => {
  const where = `TCP port ${port}${host !== "0.0.0.0" ? ` on ${host}` : ""}`
  switch (errnoOf(cause)) {
    case "EADDRINUSE":
      return `cannot listen on ${where}: the port is already in use (another p2pchat or chat responder?); ` +
        `choose another with --tcp-port`
    case "EACCES":
    case "EPERM":
      return `cannot listen on ${where}: permission denied (ports below 1024 need privileges); choose another with --tcp-port`
    case "EADDRNOTAVAIL":
      return `cannot listen on ${where}: ${host} is not an address of this host; fix --bind`
    default:
      return `cannot listen on ${where} (${cause instanceof Error ? cause.message : String(cause)}); ` +
        `choose another with --tcp-port or --bind`
  }
}

/** How a secure session that failed by itself (not by its connection) is logged and counted. */
const SESSION_END: Record<SessionErrorReason, EndReason> = {
  Handshake: "Handshake",
  Decrypt: "DecryptFailed",
  Protocol: "Unexpected",
  KeyChanged: "KeyChanged",
  Closed: "Closed"
}

export const responderLayer: Layer.Layer<Responder, ResponderError, Config | History | Events | PeerRegistry | Crypto> = Layer
  .effect(
    Responder,
    Effect.gen(function*() {
      const config = yield* Config
      const history = yield* History
      const events = yield* Events
      const registry = yield* PeerRegistry
      const crypto = yield* Crypto

      let accepted = 0
      let active = 0
      let received = 0
      let duplicates = 0
      let rejected = 0
      let storageFailures = 0
      let peakActive = 0
      const rejectedByReason: Record<string, number> = {}

      const end = (reason: EndReason, message: string) => Effect.fail(new ConnectionEnded({ reason, message }))

      const nowMs = Effect.map(Clock.monotonicTimeNanos, (n) => Number(n / 1_000_000n))

      // ---- limits: counted every time, logged the first time and then at most once a minute
      const limitCounts: Record<LimitName, number> = {
        refusedAtCap: 0,
        evictedAtCap: 0,
        firstFrameTimeout: 0,
        idleTimeout: 0,
        frameTooLarge: 0
      }
      const lastLogged: Partial<Record<LimitName, { readonly at: number; readonly count: number }>> = {}
      const bite = (limit: LimitName, detail: string) =>
        Effect.gen(function*() {
          const count = ++limitCounts[limit]
          const now = yield* nowMs
          const last = lastLogged[limit]
          if (last === undefined) {
            lastLogged[limit] = { at: now, count }
            yield* Effect.logWarning(
              `responder: limit reached: ${LIMIT_TEXT[limit](config)} (${detail}); 1 time so far. ` +
                `Logged once, then summarised at most once a minute; the responder's stats count every time`
            )
          } else if (now - last.at >= LIMIT_LOG_EVERY_MS) {
            lastLogged[limit] = { at: now, count }
            yield* Effect.logWarning(
              `responder: limit reached: ${LIMIT_TEXT[limit](config)}: ${count - last.count} more time(s) in the last ` +
                `${Math.round((now - last.at) / 1000)} s, ${count} since start`
            )
          }
        })

      // ---- connections, for the cap: the ones still without a first frame (or handshake), oldest first
      interface Conn {
        readonly label: string
        /** Counted in `active` (false once evicted: its socket is gone, its fiber ends soon). */
        counted: boolean
        evicted: boolean
        readonly destroy: () => void
      }
      const unestablished = new Set<Conn>()
      const established = (conn: Conn) => Effect.sync(() => void unestablished.delete(conn))

      /** The first frame, and a secure handshake, must be done by `deadline` (monotonic ms). */
      const byDeadline = (deadline: number, conn: Conn, what: string) =>
      <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | ConnectionEnded, R> =>
        Effect.flatMap(nowMs, (now) =>
          Effect.timeoutOrElse(self, {
            duration: Math.max(0, deadline - now),
            orElse: () =>
              Effect.andThen(
                bite("firstFrameTimeout", conn.label),
                end("Timeout", `${what} not completed within ${config.firstFrameTimeoutMs / 1000} s of connecting`)
              )
          }))

      /** A session's next frame must come within idleTimeoutMs. */
      const beforeIdle = (conn: Conn) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | ConnectionEnded, R> =>
        Effect.timeoutOrElse(self, {
          duration: config.idleTimeoutMs,
          orElse: () =>
            Effect.andThen(
              bite("idleTimeout", conn.label),
              end("Timeout", `no frame for ${config.idleTimeoutMs / 1000} s: idle session closed`)
            )
        })

      /** The classic and plain dialects; `first` is the frame that opened the connection. */
      const classicSession = (ch: FrameChannel, conn: Conn, first: Frame) =>
        Effect.gen(function*() {
          // The classic key lives as long as the connection; a new `key` frame replaces it.
          let key24: Buffer | undefined
          // Who a nameless (classic) sender is, once the registry knows its address.
          let knownSender: { readonly name: string; readonly key: string } | undefined

          // Outside a secure session nothing proves a name: a `from` that the registry knows
          // at another address is not believed, and the sender is named by its address like
          // a classic one, so a stranger cannot write into a known peer's conversation.
          const senderOf = (from: string | undefined) =>
            Effect.gen(function*() {
              if (from !== undefined) {
                const claimed = yield* registry.lookup(from)
                if (Option.isNone(claimed) || claimed.value.address === ch.address) return { name: from, key: usernameKey(from) }
              }
              if (knownSender !== undefined) return knownSender
              const peer = yield* registry.lookupByAddress(ch.address)
              if (Option.isSome(peer)) {
                knownSender = { name: peer.value.username, key: peer.value.key }
                return knownSender
              }
              const unknown = `unknown (${ch.address})`
              return { name: unknown, key: unknown }
            })

          const deliver = (text: string, mode: Mode, id: string | undefined, from: string | undefined) =>
            Effect.gen(function*() {
              const sender = yield* senderOf(from)
              const messageId = id ?? randomUUID()
              const at = new Date(yield* Clock.currentTimeMillis)
              const stored = yield* history.recordReceived({ id: messageId, peer: sender.key, text, at, mode }).pipe(
                Effect.catch((e) =>
                  Effect.gen(function*() {
                    storageFailures++
                    const message = `could not store a message from ${sender.name} (${ch.label}), not acknowledged: ${e.message}`
                    yield* Effect.logError(`responder: ${message}`)
                    yield* events.publish({ event: "error", message })
                    return undefined
                  })
                )
              )
              if (stored === undefined) return
              if (stored) {
                received++
                yield* events.publish({ event: "message", id: messageId, from: sender.name, text, mode, at: at.toISOString() })
              } else {
                duplicates++
              }
              // Only p2pchat senders give ids and read acks; a classic one would take it for a key.
              if (id !== undefined) yield* ch.send({ ack: id })
            })

          const handle = (frame: Frame): Effect.Effect<void, ConnectionEnded> => {
            switch (frame._tag) {
              case "Plain":
                return deliver(plainText(frame.frame.unencrypted_message), "plain", frame.frame.id, frame.frame.from)
              case "Key": {
                const own = randomClassicKey()
                key24 = classicKey24(classicShared(frame.frame.key, own))
                // One small write: the classic peer reads its answer with a single recv.
                return ch.send({ key: own })
              }
              case "Encrypted": {
                if (key24 === undefined) return end("NoKey", "encrypted_message before any key exchange")
                const r = classicDecrypt(key24, frame.frame.encrypted_message)
                if (!r.ok) return end("DecryptFailed", `encrypted_message does not decrypt under the session key: ${r.reason}`)
                return deliver(r.text, "classic-3des", frame.frame.id, frame.frame.from)
              }
              case "Handshake":
                return end("Unexpected", "a secure handshake must be the first frame of a connection")
              case "Ack":
              case "Cipher":
                return end("Unexpected", `unexpected ${frame._tag === "Ack" ? "ack" : "ct"} frame from an initiator`)
            }
          }

          yield* handle(first)
          const nextFrame = ch.next.pipe(beforeIdle(conn))
          for (;;) yield* handle(yield* nextFrame)
        })

      /**
       * A p2pchat/1 secure session (Noise XX), opened by handshake message 1. The sender is
       * the username its handshake proved (never a `from` field); each message is stored
       * before its ack goes back, and a frame that fails to open ends the session with
       * nothing from it stored or shown.
       */
      const secureSession = (ch: FrameChannel, conn: Conn, hello: HandshakeFrame, deadline: number) =>
        Effect.gen(function*() {
          const ownName = config.name
          if (ownName === undefined) {
            return yield* end(
              "Unsupported",
              "refused a secure session: this node has no username to prove in the handshake (start it with --name)"
            )
          }
          const { io, connectionEnded } = sessionIO(ch)
          const sessionFailed = (e: SessionError | HistoryError) =>
            Effect.gen(function*() {
              if (e._tag === "HistoryError") {
                const message = `secure session from ${ch.label} refused: cannot check its pinned key: ${e.message}`
                yield* Effect.logError(`responder: ${message}`)
                yield* events.publish({ event: "error", message })
                return yield* end("Io", message)
              }
              const cause = connectionEnded(e)
              if (cause !== undefined) return yield* Effect.fail(cause)
              // The session itself failed: tell the user, not only the log.
              yield* events.publish({ event: "warning", message: `secure session from ${ch.label}: ${e.message}` })
              return yield* end(SESSION_END[e.reason], e.message)
            })

          const session = Effect.gen(function*() {
            const left = deadline - (yield* nowMs)
            // SecureSession's own handshake timeout is only a backstop here: the deadline rules.
            const channel = yield* acceptTrusted(io, hello, ownName, {
              timeout: Math.max(0, left) + 1000,
              announcedKeyId: (name) => Effect.map(registry.lookup(name), (p) => Option.isSome(p) ? p.value.id : undefined)
            }).pipe(
              byDeadline(deadline, conn, "the secure handshake was")
            )
            yield* established(conn)
            const nextMessage = channel.receive.pipe(beforeIdle(conn))
            const who = channel.remoteUsername
            const peerKey = usernameKey(who)
            yield* Effect.logInfo(`responder: secure session from ${who} (${ch.label}), fingerprint ${channel.remoteFingerprint}`)
            yield* events.publish({ event: "info", message: `secure session from ${who}, fingerprint ${channel.remoteFingerprint}` })
            for (;;) {
              const inner = yield* nextMessage
              if (inner.type !== "msg") {
                return yield* new SessionError({
                  reason: "Protocol",
                  message: `secure session with ${who} ended: an initiator sent an ack`
                })
              }
              const at = new Date(yield* Clock.currentTimeMillis)
              const stored = yield* history.recordReceived({ id: inner.id, peer: peerKey, text: inner.text, at, mode: "noise" })
                .pipe(
                  Effect.catch((e) =>
                    Effect.gen(function*() {
                      storageFailures++
                      const message = `could not store a secure message from ${who} (${ch.label}), not acknowledged: ${e.message}`
                      yield* Effect.logError(`responder: ${message}`)
                      yield* events.publish({ event: "error", message })
                      return undefined
                    })
                  )
                )
              if (stored === undefined) continue
              yield* channel.send({ type: "ack", id: inner.id })
              if (stored) {
                received++
                yield* events.publish({ event: "message", id: inner.id, from: who, text: inner.text, mode: "noise", at: at.toISOString() })
              } else {
                duplicates++
              }
            }
          })
          return yield* session.pipe(
            Effect.provideService(Crypto, crypto),
            Effect.provideService(History, history),
            Effect.catchTags({ SessionError: sessionFailed, HistoryError: sessionFailed })
          )
        })

      const serve = (ch: FrameChannel, conn: Conn, deadline: number) =>
        Effect.gen(function*() {
          const first = yield* ch.next.pipe(byDeadline(deadline, conn, "a first frame was"))
          if (first._tag === "Handshake") return yield* secureSession(ch, conn, first.frame, deadline)
          yield* established(conn)
          return yield* classicSession(ch, conn, first)
        })

      const ended = (conn: Conn, e: ConnectionEnded) =>
        Effect.gen(function*() {
          if (conn.evicted) {
            yield* Effect.logDebug(`responder: connection from ${conn.label} closed to make room (connection cap)`)
          } else if (isBadInput(e.reason)) {
            rejected++
            rejectedByReason[e.reason] = (rejectedByReason[e.reason] ?? 0) + 1
            if (e.reason === "FrameTooLarge") yield* bite("frameTooLarge", conn.label)
            yield* Effect.logWarning(`responder: dropped connection from ${conn.label}: ${e.message}`)
          } else {
            yield* Effect.logDebug(`responder: connection from ${conn.label} ended: ${e.message}`)
          }
        })

      /**
       * Makes room for one more connection, or says there is none: at the cap the oldest
       * connection still without a first frame is closed (see the top of this file).
       */
      const makeRoom = Effect.gen(function*() {
        if (active < config.maxConnections) return true
        const victim = unestablished.values().next()
        if (victim.done === true) return false
        const conn = victim.value
        unestablished.delete(conn)
        conn.evicted = true
        conn.counted = false
        active--
        conn.destroy()
        yield* bite("evictedAtCap", conn.label)
        return true
      })

      const onConnection = (socket: Socket.Socket) =>
        Effect.gen(function*() {
          const net = yield* Effect.serviceOption(NodeSocket.NetSocket)
          const remote = Option.match(net, {
            onNone: () => "unknown",
            onSome: (s) => `${normalizeAddress(s.remoteAddress)}:${s.remotePort ?? 0}`
          })
          if (!(yield* makeRoom)) {
            // Closed at once, without reading: an orderly close (the socket is still paused).
            if (Option.isSome(net)) net.value.destroySoon()
            yield* bite("refusedAtCap", remote)
            return yield* Effect.logDebug(`responder: connection from ${remote} closed at once: connection cap`)
          }
          const deadline = (yield* nowMs) + config.firstFrameTimeoutMs
          const conn: Conn = {
            label: remote,
            counted: true,
            evicted: false,
            destroy: () => {
              if (Option.isSome(net)) net.value.destroy()
            }
          }
          accepted++
          active++
          if (active > peakActive) peakActive = active
          unestablished.add(conn)
          yield* Effect.gen(function*() {
            const ch = yield* acceptedChannel(socket, config.maxFrameBytes)
            yield* Effect.logDebug(`responder: connection from ${ch.label}`)
            yield* serve(ch, conn, deadline).pipe(Effect.catch((e) => ended(conn, e)))
          }).pipe(
            Effect.catch((e) => Effect.logDebug(`responder: ${e.message}`)),
            Effect.ensuring(Effect.sync(() => {
              unestablished.delete(conn)
              if (conn.counted) {
                conn.counted = false
                active--
              }
            })),
            Effect.scoped
          )
        })

      const host = config.bind ?? "0.0.0.0"
      // highWaterMark: what Node reads ahead per connection before TCP backpressure applies
      // (16 KiB, Node 20's default, stated so that a newer Node's larger default does not apply).
      const server = yield* NodeSocketServer.make({ host, port: config.tcpPort, highWaterMark: 16 * 1024 }).pipe(
        Effect.mapError((e) => new ResponderError({ message: listenProblem(e.reason.cause, host, config.tcpPort) }))
      )
      const port = NetAddress.isInetAddress(server.address) ? server.address.port : config.tcpPort
      yield* Effect.forkScoped(server.run(onConnection))
      yield* Effect.logInfo(`responder: listening on TCP ${host}:${port}`)

      return {
        port,
        stats: Effect.sync(() => ({
          accepted,
          active,
          received,
          duplicates,
          rejected,
          rejectedByReason: { ...rejectedByReason },
          storageFailures,
          peakActive,
          limits: { ...limitCounts }
        }))
      }
    })
  )
