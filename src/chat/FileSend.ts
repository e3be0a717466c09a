/**
 * Offering files (`send-file USER|#GROUP PATH...`, the console's `file`; protocol.md 9.1):
 * Transfers.prepare reads and hashes each PATH and stores its offer, then one `msg` per offer
 * goes through the Outbox, with the offer's id as its id: to a user, or one copy per member
 * of a group as GroupSend.ts sends them. The Outbox puts the stored offer in the msg's `file`
 * field each time it sends it, so an offer to a peer who is away goes when it is heard, as
 * any message does. Secure sessions only: a peer that cannot prove a key gets no offer.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import { groupConversation } from "../domain/Conversation.ts"
import { sizeText } from "../domain/FileName.ts"
import { refusalText } from "../domain/Frames.ts"
import type { Mode } from "../domain/Mode.ts"
import type { Peer } from "../domain/Peer.ts"
import { usernameKey } from "../domain/Presence.ts"
import type { FileOffer } from "../domain/Transfer.ts"
import type { NodeConfig } from "../services/Config.ts"
import type { PeerRegistry } from "../services/PeerRegistry.ts"
import type { TransferError, Transfers } from "../transfer/Transfers.ts"
import type { Trust } from "../trust/Trust.ts"
import type { RecipientResult } from "./Broadcast.ts"
import type { Groups } from "./Groups.ts"
import type { Outbox } from "./Outbox.ts"
import { SendError } from "./SendError.ts"
import * as Text from "./text.ts"

/** What `sendFile` did: the offers made, and how each recipient's offer msgs went (the worst of them). */
export interface FileSent {
  readonly offers: ReadonlyArray<FileOffer>
  readonly recipients: ReadonlyArray<RecipientResult>
  /** To a group: `#` and its id. */
  readonly conversation?: string
}

export interface FileSendDeps {
  readonly config: NodeConfig
  readonly registry: PeerRegistry["Service"]
  readonly outbox: Outbox["Service"]
  readonly groups: Groups["Service"]
  readonly trust: Trust["Service"]
  readonly transfers: Option.Option<Transfers["Service"]>
}

/** The line a receiver that ignores the `file` field still shows. */
export const offerText = (o: FileOffer, folder: boolean): string =>
  folder
    ? `sends a folder: ${o.name} (${o.count} file${o.count === 1 ? "" : "s"}, ${sizeText(o.size)})`
    : `sends a file: ${o.name} (${sizeText(o.size)})`

const STATE_RANK: Record<RecipientResult["state"], number> = { delivered: 0, sent: 1, pending: 2, skipped: 3, refused: 4, failed: 5 }

const refused = (message: string) => new SendError({ reason: "Refused", message })

interface Recipient {
  readonly name: string
  /** Online in the registry now (a p2pchat peer), or undefined. */
  readonly peer: Peer | undefined
  /** Pinned but not announced with a key: its copy waits, as Initiator.send's does. */
  readonly hold: string | undefined
}

export const makeFileSend = (deps: FileSendDeps) => {
  /** Who gets the offers: a user that can prove a key, or a group's other members. */
  const recipientsOf = (target: string) =>
    Effect.gen(function*() {
      if (target.startsWith("#")) {
        const group = yield* deps.groups.resolve(target).pipe(Effect.mapError((e) => new SendError({ reason: "UnknownUser", message: e.message })))
        if (group.leftAt !== undefined) return yield* refused(`you left the group ${group.state.name}`)
        const me = deps.groups.me?.key
        const members: Array<Recipient> = []
        for (const m of group.state.members.filter((m) => m.key !== me)) {
          const peer = Option.getOrUndefined(yield* deps.registry.lookup(m.name))
          const online = peer !== undefined && peer.proto === "p2pchat/1" && peer.id !== undefined
          members.push({ name: m.name, peer: online ? peer : undefined, hold: online ? undefined : `${m.name} is not online: its offer waits until it is heard` })
        }
        return { members, conversation: groupConversation(group.state.id) as string | undefined, label: `#${group.state.name}` }
      }
      const found = yield* deps.registry.lookup(target)
      if (Option.isNone(found)) return yield* Text.unknownUser(target)
      const peer = found.value
      const pinned = Option.isSome(yield* deps.trust.pinned(peer.key).pipe(Effect.orElseSucceed(() => Option.none())))
      const secure = peer.proto === "p2pchat/1" && peer.id !== undefined
      if (!pinned && !secure) {
        return yield* refused(`${peer.username} cannot have a secure session (${peer.proto === "p2pchat/1" ? "it announces no key" : "a classic program"}): files go over secure sessions only`)
      }
      const member: Recipient = { name: peer.username, peer: secure ? peer : undefined, hold: secure ? undefined : Text.pinnedNotProven(peer) }
      return { members: [member], conversation: undefined as string | undefined, label: peer.username }
    })

  /** One offer msg to one recipient, through the Outbox. */
  const copy = (r: Recipient, m: { readonly id: string; readonly text: string; readonly at: Date; readonly conversation: string | undefined }) => {
    const message = { ...m, peer: usernameKey(r.name), username: r.peer?.username ?? r.name, mode: "noise" as const }
    const sent: Effect.Effect<"delivered" | "sent" | "pending", SendError> = r.peer !== undefined
      ? deps.outbox.submit(r.peer, message)
      : deps.outbox.hold(message, r.hold ?? `${r.name} is not online`)
    return sent.pipe(
      Effect.map((state): RecipientResult => ({ peer: r.name, mode: "noise", state })),
      Effect.catch((e) =>
        Effect.succeed<RecipientResult>(e.reason === "MessageRefused"
          ? { peer: r.name, mode: "noise", state: "refused", reason: e.refused === undefined ? e.message : refusalText(e.refused), ...(e.refused === undefined ? {} : { refused: e.refused }) }
          : { peer: r.name, mode: "noise", state: e.reason === "Storage" ? "failed" : "pending", reason: e.message })
      )
    )
  }

  const sendFile = (target: string, paths: ReadonlyArray<string>, mode?: Mode): Effect.Effect<FileSent, SendError | TransferError> =>
    Effect.gen(function*() {
      if (Option.isNone(deps.transfers)) return yield* new SendError({ reason: "Unsupported", message: "this role cannot send files" })
      if (mode !== undefined && mode !== "noise") return yield* refused("files go over secure sessions only (no --plain or --classic)")
      if (deps.config.name === undefined) return yield* refused(Text.NO_NAME_FOR_SECURE)
      const { members, conversation, label } = yield* recipientsOf(target)
      if (members.length === 0) return yield* refused(`${label} has no other members`)
      const offers = yield* deps.transfers.value.prepare(paths, members.map((m) => m.name), label)
      const worst = new Map<string, RecipientResult>()
      for (const [i, offer] of offers.entries()) {
        // one offer per PATH, in order
        const folder = offer.count !== 1 || (fs.statSync(paths[i]!, { throwIfNoEntry: false })?.isDirectory() ?? false)
        const at = new Date(yield* Clock.currentTimeMillis)
        const m = { id: offer.id, text: offerText(offer, folder), at, conversation }
        const results = yield* Effect.forEach(members, (r) => copy(r, m), { concurrency: 8 })
        for (const r of results) {
          const held = worst.get(r.peer)
          if (held === undefined || STATE_RANK[r.state] > STATE_RANK[held.state]) worst.set(r.peer, r)
        }
      }
      return { offers, recipients: [...worst.values()], ...(conversation === undefined ? {} : { conversation }) }
    })

  return { sendFile }
}
