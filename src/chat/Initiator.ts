/**
 * The user's side of a chat (protocol: "p2pchat/1 additions" and "Writing to a classic
 * peer"): `send` picks the mode, checks that the message fits, and hands it to the Outbox,
 * which stores it, sends it over a Link and waits for its ack.
 *
 * The default mode is noise for a p2pchat peer that announces a key or whose name has a
 * pinned key, plain for one that announces none, and classic-3des for a classic peer. A
 * pinned name gets plain or classic only when asked for, with a warning before it leaves;
 * a secure message to a pinned name that announces no key waits (pending) for one that does.
 *
 * `broadcast` sends one message to every peer online, a copy per recipient (Broadcast.ts);
 * `group` one to a group's members, a copy per member (GroupSend.ts).
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { randomUUID } from "node:crypto"
import { CLASSIC_WARNING, p2pFrameBytes } from "../domain/Classic.ts"
import type { InnerMessage } from "../domain/Frames.ts"
import { MAX_FRAME_BYTES } from "../domain/Framing.ts"
import type { Mode } from "../domain/Mode.ts"
import type { Peer } from "../domain/Peer.ts"
import { usernameKey } from "../domain/Presence.ts"
import { MAX_INNER_BYTES } from "../dialects/noise/channel.ts"
import { Config } from "../services/Config.ts"
import { Events } from "../services/Events.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import { History } from "../services/History.ts"
import { Transfers, type TransferError } from "../transfer/Transfers.ts"
import { Trust } from "../trust/Trust.ts"
import { type BroadcastResult, makeBroadcast } from "./Broadcast.ts"
import { Groups, type Changed } from "./Groups.ts"
import { type FileSent, makeFileSend } from "./FileSend.ts"
import { type GroupSendResult, makeGroupSend } from "./GroupSend.ts"
import { Links } from "./Links.ts"
import { Outbox, type UnstoredMessage } from "./Outbox.ts"
import { SendError } from "./SendError.ts"
import * as Text from "./text.ts"

export type { FileSent } from "./FileSend.ts"

export interface SendResult {
  readonly id: string
  /** The peer's username as it announces it. */
  readonly peer: string
  readonly mode: Mode
  /** delivered: acked by a p2pchat peer; sent: written to a classic peer (which never acks). */
  readonly state: "delivered" | "sent" | "pending"
}

export class Initiator extends Context.Service<Initiator, {
  /** Sends one message; `mode` defaults to the best the peer speaks. */
  readonly send: (username: string, text: string, mode?: Mode) => Effect.Effect<SendResult, SendError>
  /**
   * Sends one message to every peer online now (Broadcast.ts): secure to each that can have
   * a secure session; `mode` (plain, classic-3des) reaches the others, skipped without it.
   */
  readonly broadcast: (text: string, mode?: Mode) => Effect.Effect<BroadcastResult, SendError>
  /** Sends one message to a group's members (GroupSend.ts): `ref` is its name or id. */
  readonly group: (ref: string, text: string) => Effect.Effect<GroupSendResult, SendError>
  /**
   * Offers files and folders (FileSend.ts): each PATH read, hashed and stored as an offer
   * (Transfers.prepare), then one `msg` per offer to `target`, a user or `#group` (a copy per
   * member). Secure sessions only: `mode`, when given, must be noise.
   */
  readonly sendFile: (target: string, paths: ReadonlyArray<string>, mode?: Mode) => Effect.Effect<FileSent, SendError | TransferError>
  /** Tells a group's members of a change made here (Groups.create, change, leave). */
  readonly groupChanged: (change: Changed) => Effect.Effect<GroupSendResult, SendError>
  /** Resends pending messages to online p2pchat peers (with their ids); how many got delivered. */
  readonly retryPending: (username?: string) => Effect.Effect<number>
  /** Closes the connections to a peer, or to every peer. */
  readonly close: (username?: string) => Effect.Effect<void>
  /** Messages kept in memory because they could not be stored yet (oldest first). */
  readonly unstored: Effect.Effect<ReadonlyArray<UnstoredMessage>>
}>()("p2pchat/Initiator") {}

/** UTF-8 bytes of the inner object that carries a secure message (at most MAX_INNER_BYTES). */
export const secureInnerBytes = (inner: InnerMessage): number => Buffer.byteLength(JSON.stringify(inner), "utf8")

const defaultMode = (peer: Peer): Mode =>
  peer.proto !== "p2pchat/1" ? "classic-3des" : peer.id !== undefined ? "noise" : "plain"

/**
 * Why `text` cannot go to `peer` in `mode` as one message, if it cannot. A pinned name is
 * sent secure messages whatever it announces (they wait for its key).
 */
const refusal = (peer: Peer, mode: Mode, ownName: string | undefined, text: string, id: string, at: Date, pinned: boolean) => {
  const p2p = peer.proto === "p2pchat/1"
  if (mode === "noise" && !p2p && !pinned) {
    return new SendError({
      reason: "Unsupported",
      message: `${peer.username} runs a classic chat program, which has no secure sessions: ` +
        `only classic (its old 3DES dialect, which is NOT secure) or unsecure (plain text) are possible ` +
        `(send --classic or --plain; in a chat, answer secure for classic, unsecure for plain)`
    })
  }
  if (mode === "noise" && ownName === undefined) return new SendError({ reason: "Refused", message: Text.NO_NAME_FOR_SECURE })
  if (mode === "noise") {
    const bytes = secureInnerBytes({ type: "msg", id, text, sentAt: at.toISOString() })
    if (bytes <= MAX_INNER_BYTES) return undefined
    return new SendError({
      reason: "Refused",
      message: `the message is too long for one secure frame (${bytes} bytes, at most ${MAX_INNER_BYTES}); ` +
        `split it into shorter messages`
    })
  }
  const bytes = p2p ? p2pFrameBytes(text, mode === "classic-3des", id, ownName) : 0
  if (bytes <= MAX_FRAME_BYTES) return undefined
  return new SendError({
    reason: "Refused",
    message: `the message is too long for one frame (${bytes} bytes on the wire, at most ${MAX_FRAME_BYTES}); ` +
      `split it into shorter messages`
  })
}

export const make = Effect.gen(function*() {
  const config = yield* Config
  const registry = yield* PeerRegistry
  const events = yield* Events
  const outbox = yield* Outbox
  const links = yield* Links
  const trust = yield* Trust
  const broadcast = makeBroadcast({ config, registry, events, outbox, trust, history: yield* History, refusal })
  const groups = makeGroupSend({ registry, outbox, groups: yield* Groups })
  const files = makeFileSend({ config, registry, outbox, trust, groups: yield* Groups, transfers: yield* Effect.serviceOption(Transfers) })

  const send = (username: string, text: string, mode?: Mode): Effect.Effect<SendResult, SendError> =>
    Effect.gen(function*() {
      const found = yield* registry.lookup(username)
      if (Option.isNone(found)) return yield* Text.unknownUser(username)
      const peer = found.value
      const pinned = Option.isSome(yield* trust.pinned(peer.key).pipe(Effect.orElseSucceed(() => Option.none())))
      const chosen = mode ?? (pinned ? "noise" : defaultMode(peer))
      const id = randomUUID()
      const at = new Date(yield* Clock.currentTimeMillis)
      const refused = refusal(peer, chosen, config.name, text, id, at, pinned)
      if (refused !== undefined) return yield* refused
      if (pinned && chosen !== "noise") {
        // logged first: the log line is written at once, before anything goes out
        const warning = Text.pinnedDowngrade(peer, chosen)
        yield* Effect.logWarning(`initiator: ${warning}`)
        yield* events.publish({ event: "warning", message: warning })
      }
      if (chosen === "classic-3des") yield* events.publish({ event: "warning", message: CLASSIC_WARNING })
      const message = { id, peer: peer.key, text, at, mode: chosen, username: peer.username }
      // Only a key can prove a pinned name: without one announced, nothing goes to that address.
      const state = pinned && chosen === "noise" && (peer.id === undefined || peer.proto !== "p2pchat/1")
        ? yield* outbox.hold(message, Text.pinnedNotProven(peer))
        : yield* outbox.submit(peer, message)
      return { id, peer: peer.username, mode: chosen, state }
    })

  return Initiator.of({
    send,
    broadcast,
    group: groups.send,
    sendFile: files.sendFile,
    groupChanged: groups.notify,
    retryPending: outbox.retryPending,
    close: (username) => links.close(username === undefined ? undefined : usernameKey(username)),
    unstored: outbox.unstored
  })
})

export const layer = Layer.effect(Initiator, make)
