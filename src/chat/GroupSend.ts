/**
 * A group message (`send '#NAME'`, the console's `msg #NAME`), and the notice of a change of
 * members: one copy per member (and, for a removal, per member removed), each over that
 * member's own secure session, all with one id, each stored as its own row in the group's
 * conversation (`#` and its id) and so delivered, retried and deduplicated by the Outbox as
 * any message to that peer is (protocol.md 5.5). The copies go all at once, their pending
 * rows stored in one commit (Outbox.submitAll). The copies carry the group's signed list as
 * it is when each one goes (Outbox.ts asks Groups.wire), so a member that was away gets the
 * newest list with the first copy that reaches it.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import { randomUUID } from "node:crypto"
import { groupConversation } from "../domain/Conversation.ts"
import { type InnerMessage, refusalText } from "../domain/Frames.ts"
import type { Member } from "../domain/Group.ts"
import { usernameKey } from "../domain/Presence.ts"
import { MAX_INNER_BYTES } from "../dialects/noise/channel.ts"
import type { StoredGroup } from "../services/GroupStore.ts"
import type { PeerRegistry } from "../services/PeerRegistry.ts"
import type { RecipientResult } from "./Broadcast.ts"
import type { Changed, Groups } from "./Groups.ts"
import type { Copy, Outbox } from "./Outbox.ts"
import { SendError } from "./SendError.ts"

/** What `send '#NAME' --json` and the `group` commands print of the copies. */
export interface GroupSendResult {
  readonly id: string
  /** `#` and the group id. */
  readonly conversation: string
  readonly group: string
  readonly recipients: ReadonlyArray<RecipientResult>
}

export interface GroupSendDeps {
  readonly registry: PeerRegistry["Service"]
  readonly outbox: Outbox["Service"]
  readonly groups: Groups["Service"]
}

export const makeGroupSend = ({ registry, outbox, groups }: GroupSendDeps) => {
  /** A member's copy: to its peer when that is an online p2pchat peer with a key, held otherwise. */
  const copy = (member: Member, m: { readonly id: string; readonly text: string; readonly at: Date; readonly conversation: string }) =>
    Effect.map(registry.lookup(member.name), (found): Copy => {
      const peer = Option.getOrUndefined(found)
      const message = { ...m, peer: usernameKey(member.name), username: peer?.username ?? member.name, mode: "noise" as const }
      return {
        peer: peer !== undefined && peer.proto === "p2pchat/1" && peer.id !== undefined ? peer : undefined,
        message,
        why: `${member.name} is not online: its copy waits until it is heard`
      }
    })

  /** How `member`'s copy `c` ended (`r`), as `send --json` prints it. */
  const outcome = (member: Member, c: Copy, r: Result.Result<"delivered" | "sent" | "pending", SendError>) =>
    Effect.gen(function*() {
      if (Result.isSuccess(r)) return { peer: member.name, mode: "noise", state: r.success } satisfies RecipientResult
      const e = r.failure
      // answered: the member's node acked it without storing it (protocol.md 5.5), not sent again
      if (e.reason === "MessageRefused") {
        const why = e.refused === undefined ? e.message : refusalText(e.refused)
        return { peer: member.name, mode: "noise", state: "refused", reason: why, ...(e.refused === undefined ? {} : { refused: e.refused }) } satisfies RecipientResult
      }
      const pending = (yield* outbox.unstored).some((u) => u.id === c.message.id && u.peer === c.message.peer) ||
        e.reason !== "Storage"
      return { peer: member.name, mode: "noise", state: pending ? "pending" : "failed", reason: e.message } satisfies RecipientResult
    })

  /** Sends `text` to the members of `group` (and `alsoTo`), one copy each. */
  const toGroup = (group: StoredGroup, text: string, alsoTo: ReadonlyArray<Member> = []) =>
    Effect.gen(function*() {
      const id = randomUUID()
      const at = new Date(yield* Clock.currentTimeMillis)
      const conversation = groupConversation(group.state.id)
      const inner: InnerMessage = {
        type: "msg", id, text, sentAt: at.toISOString(), to: conversation, group: group.state, left: true
      }
      const bytes = Buffer.byteLength(JSON.stringify(inner), "utf8")
      if (bytes > MAX_INNER_BYTES) {
        return yield* new SendError({
          reason: "Refused",
          message: `the message and the group's member list are too long for one secure frame (${bytes} bytes, at most ${MAX_INNER_BYTES})`
        })
      }
      const me = groups.me?.key
      const to = [...group.state.members.filter((m) => m.key !== me), ...alsoTo]
      // every copy at once (a group has at most MAX_MEMBERS), their pending rows in one commit
      const copies = yield* Effect.forEach(to, (member) => copy(member, { id, text, at, conversation }))
      const results = yield* outbox.submitAll(copies)
      const recipients = yield* Effect.forEach(to, (member, i) => outcome(member, copies[i]!, results[i]!))
      return { id, conversation, group: group.state.name, recipients } satisfies GroupSendResult
    })

  /** A message to the group `ref` names; refused in a group this node left. */
  const send = (ref: string, text: string) =>
    Effect.gen(function*() {
      const group = yield* groups.resolve(ref).pipe(Effect.mapError((e) => new SendError({ reason: "UnknownUser", message: e.message })))
      if (group.leftAt !== undefined) {
        return yield* new SendError({ reason: "Refused", message: `you left the group ${group.state.name}` })
      }
      if (!group.state.members.some((m) => m.key === groups.me?.key)) {
        return yield* new SendError({ reason: "Refused", message: `you are not a member of the group ${group.state.name} any more` })
      }
      return yield* toGroup(group, text)
    })

  /** Tells the members of a change made here (Groups.create, change, leave). */
  const notify = (c: Changed) => toGroup(c.group, c.notice, c.alsoTo)

  return { send, notify }
}
