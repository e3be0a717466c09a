/**
 * The message-type seam of the receiving side: each inner message a session delivers goes
 * to the handler of its `type`. The one rule every stored type follows lives here once:
 * store it (once per sender and id), make it durable, ack it, then show it.
 *
 * Adding a message type: its Schema in the inner union (domain/Frames.ts), a handler in
 * `handlers` below, and a migration in Store.ts if it needs a table.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Inner } from "../domain/Frames.ts"
import { usernameKey } from "../domain/Presence.ts"
import type { IncomingSession, Received } from "../dialects/Dialect.ts"
import { SessionError } from "../dialects/noise/channel.ts"
import { Events } from "../services/Events.ts"
import { groupConversation, groupIdOf } from "../domain/Conversation.ts"
import { keyId } from "../services/Crypto.ts"
import { ALL, History } from "../services/History.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import { Store } from "../services/Store.ts"
import { Transfers } from "../transfer/Transfers.ts"
import { believeFrom } from "../trust/Trust.ts"
import { Groups } from "./Groups.ts"
import { Stats } from "./Stats.ts"

/** Who sent a message: the name shown, and the key its conversation is filed under. */
export interface Sender {
  readonly name: string
  readonly key: string
}

/** One accepted connection, as the handlers see it. */
export interface Inbound {
  readonly session: IncomingSession
  /** "address:port", for log lines. */
  readonly label: string
  /** The username a secure session proved; undefined outside one. */
  readonly who: string | undefined
  readonly sender: (claimedFrom: string | undefined) => Effect.Effect<Sender>
}

type Handler<T extends Inner["type"]> = (
  inbound: Inbound,
  received: Received & { readonly inner: Extract<Inner, { readonly type: T }> }
) => Effect.Effect<void, SessionError>

export class Inbox extends Context.Service<Inbox, {
  readonly handle: (inbound: Inbound, received: Received) => Effect.Effect<void, SessionError>
  /**
   * Who a sender outside a secure session is. Nothing proves a name there: a `from` that the
   * registry knows at another address is not believed, and the sender is named by its
   * address like a classic one, so a stranger cannot write into a known peer's conversation.
   */
  readonly unprovenSender: (address: string) => (claimedFrom: string | undefined) => Effect.Effect<Sender>
}>()("p2pchat/Inbox") {}

/** The store-once, durable, ack, show step, and the group messages that lead to it. */
const receivers = (deps: {
  readonly history: History["Service"]
  readonly store: Store["Service"]
  readonly events: Events["Service"]
  readonly stats: Stats["Service"]
  readonly groups: Groups["Service"]
  readonly storageFailed: (sender: Sender, label: string, e: { readonly message: string }) => Effect.Effect<void>
  /** Whether file offers are shown as transfers (a `file` event), rather than as their msg's text. */
  readonly offersShown: boolean
}) => {
  const { history, store, events, stats, groups, storageFailed, offersShown } = deps
  /**
   * Stores a message once, makes it durable, acks it, then shows it (with `shown`'s fields);
   * false when it could not be stored.
   */
  const keep = (
    inbound: Inbound,
    r: Parameters<Handler<"msg">>[1],
    sender: Sender,
    conversation: string | undefined,
    shown: { readonly to?: string; readonly group?: string }
  ) =>
    Effect.gen(function*() {
      const { id, text } = r.inner
      const at = new Date(yield* Clock.currentTimeMillis)
      const stored = yield* history.recordReceived({ id, peer: sender.key, text, at, mode: r.mode, conversation }).pipe(
        Effect.tap(() => r.wantsAck ? store.durable : Effect.void),
        Effect.map(Option.some),
        Effect.catch((e) => Effect.as(storageFailed(sender, inbound.label, e), Option.none<boolean>()))
      )
      if (Option.isNone(stored)) return false
      // Only p2pchat senders give ids and read acks; a classic one would take it for a key.
      if (r.wantsAck) yield* inbound.session.ack(id)
      if (!stored.value) return yield* Effect.as(stats.add("duplicates"), true)
      yield* stats.add("received")
      const verified = r.mode === "noise" ? { verified: yield* history.isVerified(sender.key).pipe(Effect.orElseSucceed(() => false)) } : {}
      // The sender's clock, as its frame says (secure frames carry it): shown beside the arrival.
      const sentAt = Date.parse(r.inner.sentAt)
      const sent = Number.isFinite(sentAt) ? { sentAt: new Date(sentAt).toISOString() } : {}
      // an offer is shown once, as the transfer Transfers.offered publishes
      if (offersShown && r.mode === "noise" && r.inner.file !== undefined) return true
      yield* events.publish({ event: "message", id, from: sender.name, text, mode: r.mode, at: at.toISOString(), ...sent, ...verified, ...shown })
      return true
    })

  /**
   * A group message (protocol.md 5.5): a newer signed list is stored; one from a sender that
   * is not a member (by the key its session proved) is refused: acked with the refusal's code
   * (so that it is not sent again, and its sender does not take it for delivered), neither
   * stored nor shown as a message, and the user is told.
   */
  const groupMsg = (inbound: Inbound, r: Parameters<Handler<"msg">>[1], sender: Sender) =>
    Effect.gen(function*() {
      const carried = r.inner.group!
      const proven = inbound.session.proven
      const who = { name: proven?.username ?? sender.name, key: proven === undefined ? "" : keyId(proven.key) }
      const decision = yield* groups.receive(who, carried, r.inner.left === true).pipe(
        Effect.catch((e) => Effect.as(storageFailed(sender, inbound.label, e), undefined))
      )
      if (decision === undefined) return false
      if (decision._tag === "Refuse") {
        const message = `refused a message for the group ${carried.name} (${carried.id}) from ${who.name}: ${decision.reason}`
        yield* Effect.logWarning(`responder: ${message}`)
        yield* events.publish({ event: "warning", message })
        return yield* Effect.as(inbound.session.ack(r.inner.id, decision.code), false)
      }
      const conversation = groupConversation(carried.id)
      return yield* keep(inbound, r, sender, conversation, { to: conversation, group: decision.state.name })
    })
  return { keep, groupMsg }
}

export const make = Effect.gen(function*() {
  const history = yield* History
  const store = yield* Store
  const events = yield* Events
  const registry = yield* PeerRegistry
  const stats = yield* Stats
  const groups = yield* Groups
  // a node's receiving side has Transfers; a stack built without it shows an offer's text alone
  const transfers = yield* Effect.serviceOption(Transfers)

  const storageFailed = (sender: Sender, label: string, e: { readonly message: string }) =>
    Effect.gen(function*() {
      yield* stats.add("storageFailures")
      const message = `could not store a message from ${sender.name} (${label}), not acknowledged: ${e.message}`
      yield* Effect.logError(`responder: ${message}`)
      yield* events.publish({ event: "error", message })
    })

  const { keep, groupMsg } = receivers({ history, store, events, stats, groups, storageFailed, offersShown: Option.isSome(transfers) })

  const msg: Handler<"msg"> = (inbound, r) =>
    Effect.gen(function*() {
      const sender = yield* inbound.sender(r.claimedFrom)
      const to = r.inner.to
      const kept = r.mode === "noise" && r.inner.group !== undefined && groupIdOf(to) === r.inner.group.id
        ? yield* groupMsg(inbound, r, sender)
        // a broadcast is filed in its conversation too; a `to` this version does not know is ignored
        : yield* keep(inbound, r, sender, to === ALL ? ALL : undefined, to === ALL ? { to: ALL } : {})
      // a file offer (protocol.md 9.1), once its msg is stored: from the name the session proved
      const file = r.inner.file
      if (kept && r.mode === "noise" && file !== undefined && inbound.who !== undefined && Option.isSome(transfers)) {
        yield* transfers.value.offered(inbound.who, file)
      }
    })

  const ack: Handler<"ack"> = (inbound) =>
    Effect.fail(new SessionError({ reason: "Protocol", message: `secure session with ${inbound.who} ended: an initiator sent an ack` }))

  const handlers: { readonly [T in Inner["type"]]: Handler<T> } = { msg, ack }

  const pinned = (name: string) =>
    Effect.map(history.getPin(usernameKey(name)), Option.isSome).pipe(Effect.orElseSucceed(() => true))

  const unprovenSender = (address: string) => {
    let known: Sender | undefined
    return (from: string | undefined) =>
      Effect.gen(function*() {
        if (from !== undefined && believeFrom(yield* registry.lookup(from), address, yield* pinned(from))) {
          return { name: from, key: usernameKey(from) }
        }
        if (known !== undefined) return known
        const peer = yield* registry.lookupByAddress(address)
        if (Option.isSome(peer)) return known = { name: peer.value.username, key: peer.value.key }
        const unknown = `unknown (${address})`
        return { name: unknown, key: unknown }
      })
  }

  return Inbox.of({
    handle: (inbound, r) => (handlers[r.inner.type] as Handler<Inner["type"]>)(inbound, r as never),
    unprovenSender
  })
})

export const layer = Layer.effect(Inbox, make)
