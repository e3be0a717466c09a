/**
 * A broadcast (`send --all`, the console's `all`): one message to every peer online now, as
 * one copy per recipient, each with the broadcast's id, in the `*all*` conversation, stored
 * and retried by the Outbox like any message to that peer (cli.md "send --all").
 *
 * Who gets what. The broadcast is secure: every p2pchat peer that announces a key, and every
 * pinned name, gets it over a secure session (a pinned name announced without a key holds its
 * copy as pending, as `send` does). The others (classic peers, p2pchat peers announcing no
 * key) are skipped, and reported so, unless a fallback mode is asked (`--plain`,
 * `--classic`): then they get it in that mode, with the usual warning. The fallback never
 * downgrades a peer that can have the secure session; `--secure` is the default.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { randomUUID } from "node:crypto"
import { CLASSIC_WARNING } from "../domain/Classic.ts"
import type { InnerMessage } from "../domain/Frames.ts"
import type { Mode } from "../domain/Mode.ts"
import type { Peer } from "../domain/Peer.ts"
import { MAX_INNER_BYTES } from "../dialects/noise/channel.ts"
import type { NodeConfig } from "../services/Config.ts"
import type { Events } from "../services/Events.ts"
import { ALL, type History } from "../services/History.ts"
import type { PeerRegistry } from "../services/PeerRegistry.ts"
import type { Trust } from "../trust/Trust.ts"
import type { Outbox, UnstoredMessage } from "./Outbox.ts"
import { SendError } from "./SendError.ts"
import * as Text from "./text.ts"

/**
 * How one recipient's copy went: delivered (acked), sent (written to a classic peer),
 * pending (stored, sent again when the peer is heard), failed (not stored, or a classic
 * peer's one attempt failed), skipped (nothing stored: no secure session possible), refused
 * (the receiver acked it without storing it: a group copy from someone not a member there).
 */
export type RecipientState = "delivered" | "sent" | "pending" | "failed" | "skipped" | "refused"

export interface RecipientResult {
  /** The peer's username as it announces it. */
  readonly peer: string
  /** The mode its copy went in; null when skipped. */
  readonly mode: Mode | null
  readonly state: RecipientState
  /** Why, when not delivered or sent. */
  readonly reason?: string
  /** When refused: the receiver's code (protocol.md 5.3). */
  readonly refused?: string
}

/** What `send --all --json` prints. */
export interface BroadcastResult {
  readonly id: string
  readonly conversation: typeof ALL
  readonly recipients: ReadonlyArray<RecipientResult>
}

/** The services a broadcast uses, and the Initiator's own check of a message against a peer. */
export interface BroadcastDeps {
  readonly config: NodeConfig
  readonly registry: PeerRegistry["Service"]
  readonly events: Events["Service"]
  readonly outbox: Outbox["Service"]
  readonly trust: Trust["Service"]
  readonly history: History["Service"]
  readonly refusal: (peer: Peer, mode: Mode, ownName: string | undefined, text: string, id: string, at: Date, pinned: boolean) => SendError | undefined
}

/** Copies at once, at most. */
const CONCURRENCY = 8

/** The mode `peer`'s copy goes in, or why it is skipped. */
export const broadcastMode = (peer: Peer, pinned: boolean, fallback: Mode | undefined): Mode | { readonly skipped: string } => {
  if (pinned || (peer.proto === "p2pchat/1" && peer.id !== undefined)) return "noise"
  if (fallback !== undefined) return fallback
  return {
    skipped: peer.proto === "p2pchat/1"
      ? "it announces no key, so no secure session is possible (--plain or --classic includes it)"
      : "a classic peer has no secure sessions (--plain or --classic includes it)"
  }
}

export const makeBroadcast = (deps: BroadcastDeps) => {
  const { config, registry, events, outbox, trust, history } = deps

  /** After a failed copy: pending when it is stored (or kept in memory) to go again, else failed. */
  const afterFailure = (peer: Peer, mode: Mode, id: string, e: SendError) =>
    Effect.gen(function*() {
      const stored = peer.proto === "p2pchat/1" || mode === "noise"
        ? (yield* history.pendingFor(peer.key).pipe(Effect.orElseSucceed(() => []))).some((h) => h.id === id) ||
          (yield* outbox.unstored).some((u) => u.id === id && u.peer === peer.key)
        : false
      return { peer: peer.username, mode, state: stored ? "pending" : "failed", reason: e.message } satisfies RecipientResult
    })

  /** One recipient's copy: stored, then delivered (or held for a pinned name's key). */
  const copy = (peer: Peer, mode: Mode, pinned: boolean, m: Omit<UnstoredMessage, "peer" | "username" | "mode">) =>
    Effect.gen(function*() {
      const refused = deps.refusal(peer, mode, config.name, m.text, m.id, m.at, pinned)
      if (refused !== undefined) return { peer: peer.username, mode, state: "failed", reason: refused.message } satisfies RecipientResult
      const message: UnstoredMessage = { ...m, peer: peer.key, username: peer.username, mode }
      const held = pinned && mode === "noise" && (peer.id === undefined || peer.proto !== "p2pchat/1")
      const why = Text.pinnedNotProven(peer)
      const sent: Effect.Effect<"delivered" | "sent" | "pending", SendError> = held ? outbox.hold(message, why) : outbox.submit(peer, message)
      return yield* sent.pipe(
        Effect.map((state): RecipientResult => ({ peer: peer.username, mode, state, ...(state === "pending" ? { reason: why } : {}) })),
        Effect.catch((e) => afterFailure(peer, mode, m.id, e))
      )
    })

  /** Sends `text` to every peer online now; `mode` is the fallback for those without a secure session. */
  return (text: string, mode?: Mode): Effect.Effect<BroadcastResult, SendError> =>
    Effect.gen(function*() {
      const id = randomUUID()
      const at = new Date(yield* Clock.currentTimeMillis)
      if (config.name === undefined) return yield* new SendError({ reason: "Refused", message: Text.NO_NAME_FOR_SECURE })
      const inner: InnerMessage = { type: "msg", id, text, sentAt: at.toISOString(), to: ALL }
      const bytes = Buffer.byteLength(JSON.stringify(inner), "utf8")
      if (bytes > MAX_INNER_BYTES) {
        return yield* new SendError({
          reason: "Refused",
          message: `the message is too long for one secure frame (${bytes} bytes, at most ${MAX_INNER_BYTES}); split it into shorter messages`
        })
      }
      const fallback = mode === "plain" || mode === "classic-3des" ? mode : undefined
      const online = (yield* registry.list).filter((p) => p.status === "online")
      const plans = yield* Effect.forEach(online, (peer) =>
        Effect.map(
          trust.pinned(peer.key).pipe(Effect.orElseSucceed(() => Option.none())),
          (pin) => ({ peer, pinned: Option.isSome(pin), mode: broadcastMode(peer, Option.isSome(pin), fallback) })
        ))
      if (plans.some((p) => p.mode === "classic-3des")) yield* events.publish({ event: "warning", message: CLASSIC_WARNING })
      const recipients = yield* Effect.forEach(plans, (p) =>
        typeof p.mode === "string"
          ? copy(p.peer, p.mode, p.pinned, { id, text, at, conversation: ALL })
          : Effect.succeed<RecipientResult>({ peer: p.peer.username, mode: null, state: "skipped", reason: p.mode.skipped }), {
        concurrency: CONCURRENCY
      })
      return { id, conversation: ALL, recipients }
    })
}
