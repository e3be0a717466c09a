/**
 * The outbox: every outgoing message from the moment it is written until it is delivered.
 * A message is stored as pending (a commit without fsync), then sent; its row is made
 * durable (Store.durable, shared with other commits: group commit) while the frame is in
 * flight, and it becomes "delivered" once both the row is durable and the ack has come, or
 * "refused" when the ack says the receiver refused it (a group copy from someone not a
 * member there, protocol.md 5.5): final too, not sent again, a MessageRefused to the caller.
 * The delivered mark itself waits for no fsync: if it is lost, the message is sent once
 * more and the receiver, which stores an id once, acks it again.
 *
 * Pending messages go again, with the same id, when their peer is heard (any registry
 * change that shows it online), when a secure session to it opens (after `trust`, say),
 * and every RETRY_EVERY_MS; they expire after PENDING_EXPIRY_MS (not retried any more,
 * still in the history as pending). Secure messages to a name that announces a key other
 * than its pinned one wait for the user's `trust`; the user is told once per key.
 *
 * A message that cannot be stored (disk full, data dir not writable, database locked) is
 * not sent: durability first. It is kept in memory (at most `maxUnstoredMessages`, oldest
 * first), the user is told, and it is stored again before every later send and retry; once
 * stored it is an ordinary pending message. A message to a classic peer is not kept:
 * classic peers get one attempt only, and no acks.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Deferred from "effect/Deferred"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import { refusalText } from "../domain/Frames.ts"
import type { Peer } from "../domain/Peer.ts"
import { usernameKey } from "../domain/Presence.ts"
import { Config } from "../services/Config.ts"
import { Events } from "../services/Events.ts"
import { History, type HistoryEntry, type HistoryError, type NewMessage } from "../services/History.ts"
import { PeerRegistry, type RegistryChange } from "../services/PeerRegistry.ts"
import { Store } from "../services/Store.ts"
import { makeTransferStore, offerOf } from "../services/TransferStore.ts"
import { Trust } from "../trust/Trust.ts"
import { Groups } from "./Groups.ts"
import { Links } from "./Links.ts"
import { SendError } from "./SendError.ts"
import { Stats } from "./Stats.ts"
import * as Text from "./text.ts"
import { InitiatorTuning, PENDING_EXPIRY_MS, RETRY_EVERY_MS } from "./Tuning.ts"

/** An outgoing message that could not be stored yet (disk full...): kept in memory, not sent. */
export interface UnstoredMessage extends NewMessage {
  /** The peer's username as it announced it when the message was written. */
  readonly username: string
}

/** One of the copies of a message to many (a group's): to `peer` now, or held, told with `why`, when undefined. */
export interface Copy {
  readonly peer: Peer | undefined
  readonly message: UnstoredMessage
  readonly why: string
}

export class Outbox extends Context.Service<Outbox, {
  /**
   * Stores `message` as pending and delivers it to `peer`: "delivered" (acked) or "sent" (a
   * classic peer); a MessageRefused when the peer refused it (its state is "refused" then).
   */
  readonly submit: (peer: Peer, message: UnstoredMessage) => Effect.Effect<"delivered" | "sent", SendError>
  /** Stores `message` as pending without sending it now, and tells the user why (`why`). */
  readonly hold: (message: UnstoredMessage, why: string) => Effect.Effect<"pending", SendError>
  /**
   * `submit` or `hold` for every copy, all at once, their pending rows stored in one commit
   * (and so made durable by one fsync); each copy's outcome, in order.
   */
  readonly submitAll: (
    copies: ReadonlyArray<Copy>
  ) => Effect.Effect<ReadonlyArray<Result.Result<"delivered" | "sent" | "pending", SendError>>>
  /** Resends pending messages to online p2pchat peers (with their ids); how many got delivered. */
  readonly retryPending: (username?: string) => Effect.Effect<number>
  /** Messages kept in memory because they could not be stored yet (oldest first). */
  readonly unstored: Effect.Effect<ReadonlyArray<UnstoredMessage>>
}>()("p2pchat/Outbox") {}

const isP2p = (peer: Peer) => peer.proto === "p2pchat/1"

/** What the outbox's parts need. */
const Deps = Effect.gen(function*() {
  return {
    config: yield* Config,
    history: yield* History,
    store: yield* Store,
    events: yield* Events,
    registry: yield* PeerRegistry,
    links: yield* Links,
    trust: yield* Trust,
    groups: yield* Groups,
    stats: yield* Stats,
    tuning: yield* InitiatorTuning,
    transfers: makeTransferStore((yield* Store).db)
  }
})
type Deps = Effect.Success<typeof Deps>

const storageError = (what: string, cause: { readonly message: string }) =>
  new SendError({ reason: "Storage", cause, message: `${what}: ${cause.message}` })

/** Marks a message to a peer (by key) delivered, or refused with the receiver's code; true when its state changed. */
type Mark = (id: string, peer: string, refused: string | undefined) => Effect.Effect<boolean, HistoryError>

const stateOf = (refused: string | undefined) => refused === undefined ? "delivered" as const : "refused" as const

/** What a caller gets for a copy its receiver refused. */
const refusedBy = (peer: Peer, code: string) =>
  new SendError({ reason: "MessageRefused", refused: code, message: `refused by ${peer.username}: ${refusalText(code)}` })

/**
 * Delivered marks that share commits: each waits for the next commit of marks, which takes
 * every mark made meanwhile. The copies of a group message, acked together, so write the
 * history's pages once, not once each (and fill the WAL, whose checkpoints stall the event
 * loop, that much slower).
 */
const makeSharedMarks = (history: History["Service"]): Effect.Effect<Mark, never, Scope.Scope> =>
  Effect.gen(function*() {
    type Queued = { readonly id: string; readonly peer: string; readonly refused: string | undefined }
    const queue = yield* Queue.unbounded<Queued & { readonly done: Deferred.Deferred<boolean, HistoryError> }>()
    yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
      const batch = yield* Queue.takeAll(queue)
      const exit = yield* Effect.exit(history.setStateAll(batch.map(({ id, peer, refused }) => ({ id, peer, state: stateOf(refused), refused }))))
      for (const [i, m] of batch.entries()) yield* Deferred.done(m.done, Exit.map(exit, (changed) => changed[i] === true))
    })))
    return (id, peer, refused) =>
      Effect.gen(function*() {
        const done = yield* Deferred.make<boolean, HistoryError>()
        yield* Queue.offer(queue, { id, peer, refused, done })
        return yield* Deferred.await(done)
      })
  })

/** A copy being sent, by id and peer key: a group's copies share their id, each its own. */
const flightKey = (id: string, peerKey: string) => `${id}\u0000${peerKey}`

/** Delivery of one message; `inFlight` holds the copies being sent now (flightKey), so a retry does not race them. */
const makeDelivery = ({ history, links, stats, store, events, groups, transfers }: Deps, inFlight: Set<string>) => ({
  /**
   * To a p2pchat peer: the frame and the fsync of its pending row at once, then the mark (by
   * `mark` when given); gives the receiver's refusal code when it refused the message.
   */
  p2p: (
    peer: Peer,
    entry: Pick<HistoryEntry, "id" | "text" | "at" | "mode"> & { readonly conversation?: string | undefined },
    mark: Mark = (id, key, refused) => history.setState(id, key, stateOf(refused), refused)
  ) =>
    Effect.gen(function*() {
      inFlight.add(flightKey(entry.id, peer.key))
      // a group's copy carries the group's list as it is now (protocol.md 5.5)
      const group = yield* groups.wire(entry.conversation)
      // a file offer's msg carries the offer stored under its id (protocol.md 9.1), every time it goes
      const offer = entry.mode === "noise" ? yield* transfers.outById(entry.id).pipe(Effect.orElseSucceed(() => undefined)) : undefined
      const file = offer === undefined ? undefined : offerOf(offer)
      const [refused] = yield* Effect.all([
        links.deliver(peer, entry.mode, { id: entry.id, text: entry.text, sentAt: entry.at, to: entry.conversation, group, file }),
        Effect.mapError(store.durable, (e) => storageError(`delivered to ${peer.username}, but could not store it durably`, e))
      ], { concurrency: "unbounded" })
      const changed = yield* mark(entry.id, peer.key, refused).pipe(
        Effect.mapError((e) => storageError(`${refused === undefined ? "delivered to" : "refused by"} ${peer.username}, but could not record it`, e))
      )
      if (refused !== undefined) return refused
      yield* stats.add("delivered")
      if (changed) yield* events.publish({ event: "delivered", id: entry.id, to: peer.username })
      return undefined
    }).pipe(
      Effect.tapError(() => stats.add("sendFailures")),
      Effect.ensuring(Effect.sync(() => void inFlight.delete(flightKey(entry.id, peer.key))))
    ),
  /** To a classic peer: one attempt, then "sent" (it never acks). */
  classic: (peer: Peer, m: UnstoredMessage) =>
    Effect.gen(function*() {
      yield* links.deliver(peer, m.mode, { id: m.id, text: m.text, sentAt: m.at.toISOString() })
      yield* history.setState(m.id, peer.key, "sent").pipe(
        Effect.mapError((e) => storageError(`sent to ${peer.username}, but could not record it`, e))
      )
      yield* stats.add("sent")
    }).pipe(Effect.tapError(() => stats.add("sendFailures")))
})

/** The messages kept in memory because they could not be stored (see the top of this file). */
const makeUnstored = ({ config, history, events }: Deps, lock: Semaphore.Semaphore) => {
  const list: Array<UnstoredMessage> = []
  /** Why the oldest of them could not be stored, the last time it was tried. */
  const last = { problem: "" }

  /** Stores them, oldest first, stopping at the first failure; how many got stored. */
  const store: Effect.Effect<number> = lock.withPermit(Effect.uninterruptible(Effect.gen(function*() {
    let stored = 0
    let problem: string | undefined
    while (list.length > 0) {
      const ok = yield* history.recordSent(list[0]!).pipe(
        Effect.as(true),
        Effect.catch((e) => Effect.sync(() => (problem = last.problem = e.message, false)))
      )
      if (!ok) break
      list.shift()
      stored++
    }
    if (stored > 0) {
      const message = `${stored} message(s) kept in memory are stored now, and are sent as pending messages` +
        (list.length > 0 ? ` (${list.length} still wait: ${problem})` : "")
      yield* Effect.logInfo(`initiator: ${message}`)
      yield* events.publish({ event: "info", message })
    } else if (problem !== undefined) {
      yield* Effect.logDebug(`initiator: ${list.length} message(s) still cannot be stored: ${problem}`)
    }
    return stored
  })))

  /** After a failed store: keeps a message to a p2pchat peer (bounded) and fails with what happened. */
  const keep = (m: UnstoredMessage, classicPeer: boolean, problem: string): Effect.Effect<never, SendError> =>
    Effect.gen(function*() {
      const advice = Text.storageAdvice(problem, config.dataDir)
      if (classicPeer) return yield* new SendError({ reason: "Storage", message: Text.classicNotKept(problem) })
      if (list.length >= config.maxUnstoredMessages) {
        return yield* new SendError({ reason: "Storage", message: Text.notKept(problem, list.length, advice) })
      }
      list.push(m)
      const message = Text.keptInMemory(m.username, problem, list.length, advice)
      yield* Effect.logWarning(`initiator: ${message}`)
      yield* events.publish({ event: "warning", message })
      return yield* new SendError({ reason: "Storage", message })
    })

  return { list, last, store, keep }
}

/** Pending messages by peer key, oldest first, without the expired ones (they stay in history as pending). */
const pendingByPeer = ({ history, tuning }: Deps, username: string | undefined) =>
  Effect.gen(function*() {
    const pending = yield* history.pendingFor(username === undefined ? undefined : usernameKey(username)).pipe(
      Effect.catch((e) => Effect.as(Effect.logWarning(`initiator: cannot read pending messages: ${e.message}`), []))
    )
    const now = yield* Clock.currentTimeMillis
    const byPeer = new Map<string, Array<HistoryEntry>>()
    for (const entry of pending) {
      if (!(now - Date.parse(entry.at) <= (tuning.pendingExpiryMs ?? PENDING_EXPIRY_MS))) continue
      const list = byPeer.get(entry.peer)
      if (list === undefined) byPeer.set(entry.peer, [entry])
      else list.push(entry)
    }
    return byPeer
  })

/** Whether secure messages to `peer` must wait for the user's `trust`; told once per key (in `told`). */
const waitsForTrust = ({ trust, events }: Deps, told: Set<string>, peer: Peer, count: number) =>
  Effect.gen(function*() {
    const mismatch = yield* trust.pinnedMismatch(peer)
    if (Option.isNone(mismatch)) return false
    const key = `${peer.key}\u0000${peer.id}`
    if (!told.has(key)) {
      told.add(key)
      const message = Text.pinMismatch(peer, count, mismatch.value)
      yield* Effect.logWarning(`initiator: ${message}`)
      yield* events.publish({ event: "warning", message })
    }
    return true
  })

/** A pending message refused when it went again, in the background: the user is told. */
const toldRefused = ({ events }: Deps, peer: Peer, entry: HistoryEntry, code: string) =>
  Effect.gen(function*() {
    const where = entry.conversation === undefined ? "" : ` in ${entry.conversation}`
    const message = `your message${where} ("${[...entry.text].slice(0, 40).join("")}") was ${refusedBy(peer, code).message}`
    yield* Effect.logWarning(`initiator: ${message}`)
    yield* events.publish({ event: "warning", message })
  })

/** Pending messages to one online p2pchat peer, in order, stopping at the first failure. */
const retryPeer = (
  deps: Deps,
  delivery: ReturnType<typeof makeDelivery>,
  state: { readonly inFlight: Set<string>; readonly told: Set<string> },
  peer: Peer,
  all: ReadonlyArray<HistoryEntry>
) =>
  Effect.gen(function*() {
    // One being sent now is left to that attempt (which keeps it pending if it fails).
    let entries = all.filter((e) => !state.inFlight.has(flightKey(e.id, peer.key)))
    const secureCount = entries.filter((e) => e.mode === "noise").length
    if (secureCount > 0 && (yield* waitsForTrust(deps, state.told, peer, secureCount))) {
      entries = entries.filter((e) => e.mode !== "noise")
    }
    let delivered = 0
    for (const entry of entries) {
      if (state.inFlight.has(flightKey(entry.id, peer.key))) continue
      const ok = yield* delivery.p2p(peer, entry).pipe(
        Effect.tap((refused) => refused === undefined ? Effect.void : toldRefused(deps, peer, entry, refused)),
        Effect.map((refused) => refused === undefined),
        Effect.catch((e) => Effect.as(Effect.logInfo(`initiator: pending messages to ${peer.username} wait: ${e.message}`), undefined))
      )
      // a refused message is answered (not sent again): the next one goes
      if (ok === undefined) break
      if (ok) delivered++
    }
    return delivered
  })

/** Whether a registry change shows a p2pchat peer online (new, back, moved, or announcing again). */
const heardOnline = (change: RegistryChange) =>
  (change._tag === "Appeared" || change._tag === "StatusChanged" || change._tag === "Moved" || change._tag === "Heard") &&
  change.peer.status === "online" && isP2p(change.peer)

export const make = Effect.gen(function*() {
  const deps = yield* Deps
  const layerScope = yield* Effect.scope
  const state = { inFlight: new Set<string>(), told: new Set<string>(), retrying: new Set<string>() }
  const delivery = makeDelivery(deps, state.inFlight)
  const unstored = makeUnstored(deps, yield* Semaphore.make(1))
  const sharedMark = yield* makeSharedMarks(deps.history)

  const retryPending = (username?: string): Effect.Effect<number> =>
    Effect.gen(function*() {
      // What waits in memory is stored first (and then sent with the rest).
      if (unstored.list.length > 0) yield* unstored.store
      let delivered = 0
      for (const [key, entries] of yield* pendingByPeer(deps, username)) {
        const peer = yield* deps.registry.lookup(key)
        if (Option.isNone(peer) || !isP2p(peer.value) || peer.value.status !== "online" || state.retrying.has(key)) continue
        state.retrying.add(key)
        delivered += yield* retryPeer(deps, delivery, state, peer.value, entries).pipe(
          Effect.ensuring(Effect.sync(() => void state.retrying.delete(key)))
        )
      }
      return delivered
    })

  const submit = (peer: Peer, m: UnstoredMessage) =>
    Effect.gen(function*() {
      // Messages kept in memory go first, so that the history keeps the order they were written in.
      if (isP2p(peer) && unstored.list.length > 0) {
        if ((yield* unstored.store) > 0) yield* Effect.forkIn(retryPending(), layerScope)
        if (unstored.list.length > 0) return yield* unstored.keep(m, false, unstored.last.problem)
      }
      yield* deps.history.recordSent(m).pipe(Effect.catch((e) => unstored.keep(m, !isP2p(peer), e.message)))
      return yield* sendStored(peer, m)
    })

  /** Sends a message whose pending row is stored. */
  const sendStored = (peer: Peer, m: UnstoredMessage, mark?: Mark) =>
    isP2p(peer)
      ? Effect.flatMap(
        delivery.p2p(peer, { id: m.id, text: m.text, at: m.at.toISOString(), mode: m.mode, conversation: m.conversation }, mark),
        (refused) => refused === undefined ? Effect.succeed("delivered" as const) : Effect.fail(refusedBy(peer, refused))
      )
      : Effect.as(delivery.classic(peer, m), "sent" as const)

  const told = (why: string) =>
    Effect.gen(function*() {
      yield* Effect.logWarning(`initiator: ${why}`)
      yield* deps.events.publish({ event: "warning", message: why })
      return "pending" as const
    })

  const hold = (m: UnstoredMessage, why: string) =>
    Effect.andThen(deps.history.recordSent(m).pipe(Effect.catch((e) => unstored.keep(m, false, e.message))), told(why))

  const submitAll = (copies: ReadonlyArray<Copy>) =>
    Effect.gen(function*() {
      // One commit for all; with messages kept in memory (which go first), or when that commit
      // fails, each copy is stored on its own, as submit and hold store it.
      const stored = unstored.list.length === 0 &&
        (yield* deps.history.recordSentAll(copies.map((c) => c.message)).pipe(Effect.as(true), Effect.orElseSucceed(() => false)))
      const one = ({ peer, message, why }: Copy): Effect.Effect<"delivered" | "sent" | "pending", SendError> =>
        peer === undefined
          ? (stored ? told(why) : hold(message, why))
          : (stored ? sendStored(peer, message, sharedMark) : submit(peer, message))
      return yield* Effect.forEach(copies, (c) => Effect.result(one(c)), { concurrency: "unbounded" })
    })

  const retryIn = (peerKey?: string) => Effect.forkIn(retryPending(peerKey), layerScope)
  // The pending lookup is one indexed query: it runs at every announcement of a peer online.
  yield* Effect.forkScoped(Stream.runForEach(yield* deps.registry.changes, (c) => heardOnline(c) ? retryIn(c.peer.key) : Effect.void))
  // A secure session is open: what waited for it (after `trust`, say) can go now.
  yield* Effect.forkScoped(Stream.runForEach(yield* deps.links.secureOpened, (peer) => retryIn(peer.key)))
  // The first sweep waits one interval: a one-shot `send` ends long before it.
  yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(deps.tuning.retryEveryMs ?? RETRY_EVERY_MS), retryPending())))

  return Outbox.of({ submit, hold, submitAll, retryPending, unstored: Effect.sync(() => [...unstored.list]) })
})

export const layer = Layer.effect(Outbox, make)
