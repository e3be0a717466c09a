/**
 * Links: the open sessions to peers, one per (peer, mode, address, announced key), shared
 * by every send to that peer (an RcMap: concurrent sends share one connection, and one
 * handshake). One reader fiber per link routes the peer's acks (and, in a secure session,
 * the refusal an ack may carry) to the sends waiting for them, so sends are pipelined. A link is dropped (invalidated) when its connection ends,
 * a send on it fails, or the peer moves, leaves or announces another key: the key of the
 * map names the address and the announced key, so a moved peer is never reached through a
 * stale connection.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as RcMap from "effect/RcMap"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Mode } from "../domain/Mode.ts"
import type { Peer } from "../domain/Peer.ts"
import type { Target } from "./text.ts"
import * as Classic3des from "../dialects/classic3des.ts"
import * as ClassicPlain from "../dialects/classicPlain.ts"
import type { OutgoingMessage, OutgoingSession } from "../dialects/Dialect.ts"
import type { Pace } from "../dialects/wire.ts"
import type { SessionError } from "../dialects/noise/channel.ts"
import * as Noise from "../dialects/noise/index.ts"
import * as Plain from "../dialects/plain.ts"
import { Config } from "../services/Config.ts"
import { Crypto } from "../services/Crypto.ts"
import { Events } from "../services/Events.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import type { FrameChannel } from "../transport/Transport.ts"
import { Transport } from "../transport/Transport.ts"
import { Trust } from "../trust/Trust.ts"
import { SendError } from "./SendError.ts"
import { Stats } from "./Stats.ts"
import { handshakeTimeoutOf, InitiatorTuning, secondsText } from "./Tuning.ts"
import * as Text from "./text.ts"

interface Link {
  readonly key: LinkKey
  readonly session: OutgoingSession
  /** The sends waiting for an ack, by id: each gets the peer's refusal code, if it refused. */
  readonly acks: Map<string, Deferred.Deferred<string | undefined, SessionError>>
  open: boolean
}

export class Links extends Context.Service<Links, {
  /**
   * Sends one message to `peer` in `mode` and, where the peer acks, waits for the ack; gives
   * the refusal code when the peer acked it refused (a secure session's `refused`), else
   * undefined (stored, or written to a classic peer).
   */
  readonly deliver: (peer: Peer, mode: Mode, message: OutgoingMessage) => Effect.Effect<string | undefined, SendError>
  /** Closes the links to a peer (by registry key), or to every peer. */
  readonly close: (peerKey?: string) => Effect.Effect<void>
  /** Peers a secure session was just opened to (what waited for one can go now). */
  readonly secureOpened: Effect.Effect<Stream.Stream<Target>, never, Scope.Scope>
}>()("p2pchat/Links") {}

const isClassicPeer = (peer: Target) => peer.proto !== "p2pchat/1"

/**
 * What a link is for and where it goes, compared by value: a peer that moves or announces
 * another key gets a new link. It carries what opening the link needs.
 */
class LinkKey extends Data.Class<Target & { readonly mode: Mode }> {}

const keyOf = (peer: Peer, mode: Mode) =>
  new LinkKey({
    key: peer.key,
    mode,
    username: peer.username,
    address: peer.address,
    port: peer.port,
    id: peer.id,
    proto: peer.proto
  })

const monotonicMillis = Effect.map(Clock.monotonicTimeNanos, (n) => Number(n / 1_000_000n))

/** Spaces writes to each classic peer by the classic pause, on any of its connections. */
const makePacer = (pauseMs: number) => {
  /** Monotonic ms of the last frame written to each classic peer. */
  const lastWrite = new Map<string, number>()
  const pace = (peer: Target): Pace => (write) =>
    Effect.gen(function*() {
      const wait = (lastWrite.get(peer.key) ?? 0) + pauseMs - (yield* monotonicMillis)
      if (wait > 0) yield* Effect.sleep(wait)
      const result = yield* write
      lastWrite.set(peer.key, yield* monotonicMillis)
      return result
    })
  return { pace, forget: (peerKey: string) => void lastWrite.delete(peerKey) }
}

/** What opening a session needs. */
const SessionDeps = Effect.gen(function*() {
  return {
    config: yield* Config,
    tuning: yield* InitiatorTuning,
    crypto: yield* Crypto,
    trust: yield* Trust
  }
})
type SessionDeps = Effect.Success<typeof SessionDeps>

/** The Noise handshake to `peer`, as this node's name, expecting the name and key it announced. */
const handshake = ({ config, crypto, trust, tuning }: SessionDeps, peer: Target, ch: FrameChannel) =>
  Effect.gen(function*() {
    const ownName = config.name
    if (ownName === undefined) return yield* new SendError({ reason: "Refused", message: Text.NO_NAME_FOR_SECURE })
    const timeoutMs = handshakeTimeoutOf(tuning)
    return yield* Noise.initiate(ch, ownName, {
      expectedUsername: peer.username,
      expectedKeyId: peer.id,
      // a backstop: the timeout below answers first
      timeout: timeoutMs + 1000
    }).pipe(
      Effect.provideService(Crypto, crypto),
      Effect.provideService(Trust, trust),
      Effect.mapError((e) =>
        e._tag === "HistoryError"
          ? new SendError({ reason: "Storage", cause: e, message: `cannot check the pinned key of ${peer.username}: ${e.message}` })
          : Text.handshakeFailed(peer, e)
      ),
      Effect.timeoutOrElse({
        duration: timeoutMs,
        orElse: () => Effect.fail(new SendError({ reason: "Timeout", message: Text.handshakeTimeout(peer, timeoutMs) }))
      })
    )
  })

/** The dialect of `mode` to `peer` (a p2pchat or a classic one), on a dialed connection. */
const sessionOf = (deps: SessionDeps, pace: Pace, peer: Target, mode: Mode, ch: FrameChannel) => {
  switch (mode) {
    case "noise":
      return handshake(deps, peer, ch)
    case "plain":
      return Effect.succeed(isClassicPeer(peer) ? ClassicPlain.initiate(ch, pace) : Plain.initiate(ch, deps.config.name))
    case "classic-3des":
      return Effect.succeed(Classic3des.initiate(ch, {
        p2p: !isClassicPeer(peer),
        from: deps.config.name,
        pace,
        answerTimeoutMs: deps.tuning.ackTimeoutMs
      }))
  }
}

/** Sends on a link and waits for the ack where there is one. */
const sendOn = (link: Link, m: OutgoingMessage, ackTimeoutMs: number) =>
  Effect.gen(function*() {
    if (!link.open) return yield* Text.linkClosed
    if (!link.session.acked) return yield* Effect.as(link.session.send(m), undefined)
    let ack = link.acks.get(m.id)
    if (ack === undefined) {
      ack = Deferred.makeUnsafe<string | undefined, SessionError>()
      link.acks.set(m.id, ack)
    }
    const waiter = ack
    yield* link.session.send(m)
    return yield* Deferred.await(waiter).pipe(
      Effect.timeoutOrElse({ duration: ackTimeoutMs, orElse: () => Effect.fail(Text.noAck(secondsText(ackTimeoutMs))) }),
      Effect.ensuring(Effect.sync(() => {
        if (link.acks.get(m.id) === waiter) link.acks.delete(m.id)
      }))
    )
  })

/** The one reader of a link: routes acks to the sends waiting for them until the link ends. */
const readReplies = (link: Link) =>
  Effect.gen(function*() {
    for (;;) {
      const { id, refused } = yield* link.session.replies
      const waiter = link.acks.get(id)
      if (waiter !== undefined) {
        link.acks.delete(id)
        Deferred.doneUnsafe(waiter, Effect.succeed(refused))
      }
    }
  })

/** Marks a link closed and fails the sends waiting on it; false if it was closed already. */
const closeLink = (link: Link, why: SessionError): boolean => {
  if (!link.open) return false
  link.open = false
  for (const d of link.acks.values()) Deferred.doneUnsafe(d, Effect.fail(why))
  link.acks.clear()
  return true
}

const warnSessionFault = (events: Events["Service"], e: SessionError) =>
  Text.isSessionFault(e)
    ? Effect.andThen(Effect.logWarning(`initiator: ${e.message}`), events.publish({ event: "warning", message: e.message }))
    : Effect.void

/** A link lost under a send: not a peer that stayed silent, nor one that said why it refused. */
const isLost = (e: SendError | SessionError): e is SessionError =>
  e._tag === "SessionError" && e.reason !== "Timeout" && e.reason !== "PeerRefused"

/** A link lost under a send (not a peer that stayed silent) is tried once more, on a new connection. */
const retryLostOnce = <A>(once: Effect.Effect<A, SendError | SessionError>, peer: Target): Effect.Effect<A, SendError> =>
  once.pipe(
    Effect.catchIf(isLost, () => once),
    Effect.mapError((e) => e._tag === "SessionError" ? Text.sendFailed(peer, e) : e)
  )

export const make = Effect.gen(function*() {
  const deps = yield* SessionDeps
  const transport = yield* Transport
  const events = yield* Events
  const stats = yield* Stats
  const layerScope = yield* Effect.scope
  const opened = yield* PubSub.unbounded<Target>()
  const pacer = makePacer(deps.tuning.classicPauseMs)

  /**
   * Closes a link for good and takes it out of the map, so the next send dials anew. Its
   * reader forks the removal (closing the link's scope would interrupt the reader itself);
   * a send removes it at once, before it tries again.
   */
  const drop = (link: Link, why: SessionError, from: "reader" | "send"): Effect.Effect<void> =>
    Effect.suspend(() => {
      const remove = RcMap.invalidate(map, link.key)
      if (!closeLink(link, why)) return from === "send" ? remove : Effect.void
      return Effect.andThen(
        Effect.logDebug(`initiator: connection closed: ${why.message}`),
        from === "send" ? remove : Effect.forkIn(remove, layerScope)
      )
    })

  // A secure session that failed by itself (not by its connection) is news for the user.
  const readerEnded = (link: Link) => (e: SessionError) =>
    Effect.andThen(link.open && link.session.mode === "noise" ? warnSessionFault(events, e) : Effect.void, drop(link, e, "reader"))

  const open = (key: LinkKey): Effect.Effect<Link, SendError, Scope.Scope> =>
    Effect.gen(function*() {
      const { mode, ...peer } = key
      const ch = yield* transport.dial(peer.address, peer.port, deps.tuning.connectTimeoutMs).pipe(
        Effect.mapError((e) =>
          new SendError({ reason: "Unreachable", cause: e, message: `cannot reach ${peer.username}: ${e.message}${Text.keptNote(peer)}` })
        )
      )
      const link: Link = { key, session: yield* sessionOf(deps, pacer.pace(peer), peer, mode, ch), acks: new Map(), open: true }
      yield* Effect.forkScoped(Effect.catch(readReplies(link), readerEnded(link)))
      if (link.session.proven !== undefined) {
        const { username, fingerprint } = link.session.proven
        yield* Effect.logDebug(`initiator: secure session to ${username} (${ch.label}), fingerprint ${fingerprint}`)
        yield* events.publish({ event: "info", message: `secure session to ${username}, fingerprint ${fingerprint}` })
        yield* stats.add("sessionsOut")
        yield* PubSub.publish(opened, peer)
      }
      return link
    })

  const map: RcMap.RcMap<LinkKey, Link, SendError> = yield* RcMap.make({ lookup: open, idleTimeToLive: deps.config.idleTimeoutMs })

  const deliver = (peer: Peer, mode: Mode, m: OutgoingMessage): Effect.Effect<string | undefined, SendError> => {
    const key = keyOf(peer, mode)
    const once: Effect.Effect<string | undefined, SendError | SessionError> = Effect.scoped(Effect.gen(function*() {
      const link = yield* RcMap.get(map, key).pipe(Effect.tapError(() => RcMap.invalidate(map, key)))
      return yield* sendOn(link, m, deps.tuning.ackTimeoutMs).pipe(Effect.tapError((e) => drop(link, e, "send")))
    }))
    return retryLostOnce(once, peer)
  }

  const close = (peerKey?: string) =>
    Effect.gen(function*() {
      for (const key of yield* RcMap.keys(map)) {
        if (peerKey === undefined || key.key === peerKey) yield* RcMap.invalidate(map, key)
      }
      if (peerKey !== undefined) pacer.forget(peerKey)
    })

  // A peer that moves, leaves or expires: its connections are closed.
  const changes = yield* (yield* PeerRegistry).changes
  yield* Effect.forkScoped(Stream.runForEach(changes, (c) =>
    c._tag === "Moved" || c._tag === "Left" || c._tag === "Expired" ? close(c.peer.key) : Effect.void))
  yield* Effect.addFinalizer(() => close())

  return Links.of({ deliver, close, secureOpened: Effect.map(PubSub.subscribe(opened), Stream.fromSubscription) })
})

export const layer = Layer.effect(Links, make)
