/**
 * The chat server (PROTOCOL.md 2): accepts many connections at once, one fiber each, and
 * serves the classic dialect and the p2pchat/1 additions on the same port. A message is
 * stored before it is acked; bad input ends that connection only, with a logged reason.
 *
 * The first frame picks the session: `hs` opens a secure session (Noise XX with trust on
 * first use, SecureSession.ts); anything else is the classic/plain session, which keeps the
 * classic key per connection.
 */
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import { Clock, Context, Data, Effect, Layer, Option } from "effect"
import { NetAddress } from "effect/net"
import type { Socket } from "effect/socket"
import { randomUUID } from "node:crypto"
import { classicDecrypt, classicKey24, classicShared, randomClassicKey } from "../domain/Classic.ts"
import { type Frame, type HandshakeFrame, plainText } from "../domain/Frames.ts"
import { usernameKey } from "../domain/Presence.ts"
import { Config } from "./Config.ts"
import { acceptedChannel, ConnectionEnded, type EndReason, type FrameChannel, isBadInput, sessionIO } from "./Connection.ts"
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
}

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
      const rejectedByReason: Record<string, number> = {}

      const end = (reason: EndReason, message: string) => Effect.fail(new ConnectionEnded({ reason, message }))

      /** The classic and plain dialects; `first` is the frame that opened the connection. */
      const classicSession = (ch: FrameChannel, first: Frame) =>
        Effect.gen(function*() {
          // The classic key lives as long as the connection; a new `key` frame replaces it.
          let key24: Buffer | undefined
          // Who a nameless (classic) sender is, once the registry knows its address.
          let knownSender: { readonly name: string; readonly key: string } | undefined

          const senderOf = (from: string | undefined) =>
            Effect.gen(function*() {
              if (from !== undefined) return { name: from, key: usernameKey(from) }
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
          for (;;) yield* handle(yield* ch.next)
        })

      /**
       * A p2pchat/1 secure session (Noise XX), opened by handshake message 1. The sender is
       * the username its handshake proved (never a `from` field); each message is stored
       * before its ack goes back, and a frame that fails to open ends the session with
       * nothing from it stored or shown.
       */
      const secureSession = (ch: FrameChannel, hello: HandshakeFrame) =>
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
            const channel = yield* acceptTrusted(io, hello, ownName)
            const who = channel.remoteUsername
            const peerKey = usernameKey(who)
            yield* Effect.logInfo(`responder: secure session from ${who} (${ch.label}), fingerprint ${channel.remoteFingerprint}`)
            yield* events.publish({ event: "info", message: `secure session from ${who}, fingerprint ${channel.remoteFingerprint}` })
            for (;;) {
              const inner = yield* channel.receive
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
            Effect.catch(sessionFailed)
          )
        })

      const serve = (ch: FrameChannel) =>
        Effect.gen(function*() {
          const first = yield* ch.next
          return yield* first._tag === "Handshake" ? secureSession(ch, first.frame) : classicSession(ch, first)
        })

      const ended = (label: string, e: ConnectionEnded) =>
        Effect.gen(function*() {
          if (isBadInput(e.reason)) {
            rejected++
            rejectedByReason[e.reason] = (rejectedByReason[e.reason] ?? 0) + 1
            yield* Effect.logWarning(`responder: dropped connection from ${label}: ${e.message}`)
          } else {
            yield* Effect.logDebug(`responder: connection from ${label} ended: ${e.message}`)
          }
        })

      const onConnection = (socket: Socket.Socket) =>
        Effect.gen(function*() {
          const ch = yield* acceptedChannel(socket)
          accepted++
          active++
          yield* Effect.logDebug(`responder: connection from ${ch.label}`)
          yield* serve(ch).pipe(
            Effect.catch((e) => ended(ch.label, e)),
            Effect.ensuring(Effect.sync(() => void active--))
          )
        }).pipe(
          Effect.catch((e) => Effect.logDebug(`responder: ${e.message}`)),
          Effect.scoped
        )

      const host = config.bind ?? "0.0.0.0"
      const server = yield* NodeSocketServer.make({ host, port: config.tcpPort }).pipe(
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
          storageFailures
        }))
      }
    })
  )
