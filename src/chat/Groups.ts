/**
 * The groups this node holds (protocol.md 5.5, cli.md "group"): their signed member lists,
 * kept in the Store (GroupStore), and the rules of domain/Group.ts applied to them.
 *
 * The creator makes every version: it adds and removes, and signs the list with its identity
 * key. Any member may leave: its node marks the group left (and refuses what comes for it
 * later) and tells every member; the creator's node, told, removes it in a new version. What
 * goes on the wire (the copies, their retries) is the Outbox's, through GroupSend.ts; this
 * service holds the state, and what the Inbox asks of it when a group message arrives.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { randomUUID } from "node:crypto"
import { groupConversation, groupIdOf } from "../domain/Conversation.ts"
import {
  changed, changeProblem, creatorOf, decide, type Decision, type GroupState, groupSignedBytes, MAX_MEMBERS, type Member,
  newGroupId, sameVersion, type UnsignedState
} from "../domain/Group.ts"
import { normalizeUsername, usernameKey, usernameProblem } from "../domain/Presence.ts"
import { makeVerifier } from "../domain/Xeddsa.ts"
import { Config } from "../services/Config.ts"
import { Crypto, keyId } from "../services/Crypto.ts"
import { type StoredGroup, makeGroupStore } from "../services/GroupStore.ts"
import { History } from "../services/History.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import type { SqlDb } from "../services/Sql.ts"
import { Store } from "../services/Store.ts"

export class GroupError extends Data.TaggedError("GroupError")<{
  readonly reason: "Usage" | "NotFound" | "Ambiguous" | "Refused" | "Storage"
  readonly message: string
}> {}

/** A change made here, to be told to its members (GroupSend.ts sends the notice). */
export interface Changed {
  readonly group: StoredGroup
  /** Who gets the notice besides the members of the new list: those it removed. */
  readonly alsoTo: ReadonlyArray<Member>
  /** The notice's text, which is what a receiver without groups shows. */
  readonly notice: string
}

export class Groups extends Context.Service<Groups, {
  readonly list: Effect.Effect<ReadonlyArray<StoredGroup>, GroupError>
  /** The group `ref` names: its name (a local label, refused when two share it) or its id, with or without `#`. */
  readonly resolve: (ref: string) => Effect.Effect<StoredGroup, GroupError>
  readonly create: (name: string, users: ReadonlyArray<string>) => Effect.Effect<Changed, GroupError>
  readonly change: (ref: string, add: ReadonlyArray<string>, remove: ReadonlyArray<string>) => Effect.Effect<Changed, GroupError>
  readonly leave: (ref: string) => Effect.Effect<Changed, GroupError>
  /** What a copy in `conversation` carries: the group's newest list, and whether this node left it. */
  readonly wire: (conversation: string | undefined) => Effect.Effect<{ readonly state: GroupState; readonly left: boolean } | undefined>
  /**
   * A group message arrived from `sender` (the name and key its session proved) carrying
   * `carried`: stores a newer list, and says whether the message is accepted. A member's
   * `left` is applied here when this node is the creator: a new version, and its notice
   * stored as pending copies for the Outbox.
   */
  readonly receive: (sender: Member, carried: GroupState, left: boolean) => Effect.Effect<Decision, GroupError>
  /** This node as a member; undefined without a name. */
  readonly me: Member | undefined
}>()("p2pchat/Groups") {}

const storage = (e: { readonly message: string }) => new GroupError({ reason: "Storage", message: e.message })
const refused = (message: string) => new GroupError({ reason: "Refused", message })

/** Who `users` are as members: each needs a key pinned (a p2pchat peer this node had a secure session with). */
const membersOf = (
  history: History["Service"],
  registry: PeerRegistry["Service"],
  me: Member,
  users: ReadonlyArray<string>
) =>
  Effect.forEach(users, (raw) =>
    Effect.gen(function*() {
      const user = normalizeUsername(raw.trim())
      const problem = usernameProblem(user)
      if (problem !== undefined) return yield* new GroupError({ reason: "Usage", message: `'${raw}' is not a username: ${problem}` })
      if (usernameKey(user) === usernameKey(me.name)) return yield* new GroupError({ reason: "Usage", message: `${user} is you` })
      const pin = yield* history.getPin(usernameKey(user)).pipe(Effect.mapError(storage))
      const peer = Option.getOrUndefined(yield* registry.lookup(user))
      if (Option.isNone(pin)) {
        return yield* refused(
          peer !== undefined && peer.proto !== "p2pchat/1"
            ? `${peer.username} runs a classic chat program: a group member must be a p2pchat peer with a pinned key (classic peers have no secure sessions)`
            : `${user} has no pinned key: a group member must be a p2pchat peer this node has had a secure session with ` +
              `(send them a message first, or \`p2pchat trust ${user} FINGERPRINT\`)`
        )
      }
      return { name: peer?.username ?? user, key: keyId(pin.value) } satisfies Member
    }))

const names = (ms: ReadonlyArray<Member>) => ms.map((m) => m.name).join(", ")

/** The group `ref` names among `store`'s. */
const resolveIn = (store: ReturnType<typeof makeGroupStore>, ref: string) =>
  Effect.gen(function*() {
    const text = ref.startsWith("#") ? ref.slice(1) : ref
    const byId = yield* store.get(text).pipe(Effect.mapError(storage))
    if (byId !== undefined) return byId
    const found = yield* store.named(text).pipe(Effect.mapError(storage))
    if (found.length === 1) return found[0]!
    if (found.length === 0) {
      return yield* new GroupError({ reason: "NotFound", message: `no group '${text}' here; \`p2pchat group list\` lists them` })
    }
    return yield* new GroupError({
      reason: "Ambiguous",
      message: `${found.length} groups are named '${text}' here (ids ${found.map((g) => g.state.id).join(", ")}): give its id instead`
    })
  })

/**
 * The group `ref` names in a database read without the service (`p2pchat history '#NAME'`,
 * on a data dir opened read-only): as `Groups.resolve` finds it.
 */
export const resolveInDb = (db: SqlDb, ref: string): Effect.Effect<StoredGroup, GroupError> =>
  Effect.try({ try: () => makeGroupStore(db), catch: (e) => storage({ message: e instanceof Error ? e.message : String(e) }) }).pipe(
    Effect.flatMap((store) => resolveIn(store, ref))
  )

/** The changes made here: create, add/remove (the creator), leave (a member). */
const makeChanges = (deps: {
  readonly store: ReturnType<typeof makeGroupStore>
  readonly history: History["Service"]
  readonly registry: PeerRegistry["Service"]
  readonly sign: (s: UnsignedState) => GroupState
  readonly me: Member | undefined
}) => {
  const { store, sign } = deps
  const needMe = deps.me === undefined
    ? Effect.fail(refused("a group needs this node's username (--name)"))
    : Effect.succeed(deps.me)
  const put = (state: GroupState) =>
    Effect.gen(function*() {
      const at = new Date(yield* Clock.currentTimeMillis)
      if (!(yield* store.put(state, at).pipe(Effect.mapError(storage)))) return yield* refused("the group changed meanwhile; try again")
      return { state } satisfies StoredGroup
    })
  const create = (name: string, users: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const me = yield* needMe
      const label = normalizeUsername(name.startsWith("#") ? name.slice(1) : name)
      const problem = usernameProblem(label)
      if (problem !== undefined) return yield* new GroupError({ reason: "Usage", message: `'${name}' is not a group name: ${problem}` })
      const members = yield* membersOf(deps.history, deps.registry, me, [...new Set(users.map((u) => usernameKey(u)))])
      if (members.length + 1 > MAX_MEMBERS) return yield* refused(`a group has at most ${MAX_MEMBERS} members`)
      const group = yield* put(sign({ id: newGroupId(), name: label, version: 1, creator: me.key, members: [me, ...members] }))
      const notice = `${me.name} made the group ${label}` + (members.length > 0 ? ` with ${names(members)}` : "")
      return { group, alsoTo: [], notice } satisfies Changed
    })
  const change = (ref: string, addUsers: ReadonlyArray<string>, remove: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const me = yield* needMe
      const held = yield* resolveIn(store, ref)
      if (held.leftAt !== undefined) return yield* refused(`you left ${held.state.name}`)
      const add = yield* membersOf(deps.history, deps.registry, me, [...new Set(addUsers.map((u) => usernameKey(u)))])
      const problem = changeProblem(held.state, me, add, remove)
      if (problem !== undefined) return yield* refused(problem)
      const group = yield* put(sign(changed(held.state, add, remove)))
      const gone = held.state.members.filter((m) => !group.state.members.some((n) => n.key === m.key && n.name === m.name))
      const notice = [add.length > 0 ? `${me.name} added ${names(add)}` : "", gone.length > 0 ? `${me.name} removed ${names(gone)}` : ""]
        .filter((s) => s !== "").join("; ")
      return { group, alsoTo: gone, notice } satisfies Changed
    })
  const leave = (ref: string) =>
    Effect.gen(function*() {
      const me = yield* needMe
      const held = yield* resolveIn(store, ref)
      if (held.leftAt !== undefined) return yield* refused(`you left ${held.state.name} already`)
      if (held.state.creator === me.key) return yield* refused("the creator cannot leave: its group changes only through it")
      const at = new Date(yield* Clock.currentTimeMillis)
      yield* store.leave(held.state.id, at).pipe(Effect.mapError(storage))
      return { group: { ...held, leftAt: at.toISOString() }, alsoTo: [], notice: `${me.name} left the group ${held.state.name}` }
    })
  return { create, change, leave }
}

export const make = Effect.gen(function*() {
  const { db } = yield* Store
  const crypto = yield* Crypto
  const config = yield* Config
  const history = yield* History
  const registry = yield* PeerRegistry
  const store = makeGroupStore(db)
  const verifier = makeVerifier(1024)
  const me: Member | undefined = config.name === undefined ? undefined : { name: config.name, key: crypto.identity.id }
  const sign = (s: UnsignedState): GroupState => ({ ...s, sig: crypto.signPresence(groupSignedBytes(s)) })
  const verify = (s: GroupState) => verifier(s.creator, groupSignedBytes(s), new Uint8Array(Buffer.from(s.sig, "base64url")))
  const changes = makeChanges({ store, history, registry, sign, me })

  /** This node, the creator, removes a member who left, and stores the notice as a pending copy to every member. */
  const removeLeaver = (state: GroupState, leaver: Member) =>
    Effect.gen(function*() {
      const at = new Date(yield* Clock.currentTimeMillis)
      const next = sign(changed(state, [], [leaver.name]))
      if (!(yield* store.put(next, at))) return
      const text = `${creatorOf(next)?.name ?? "the creator"} removed ${leaver.name}, who left`
      const id = randomUUID()
      for (const m of next.members) {
        if (m.key === state.creator) continue
        yield* history.recordSent({ id, peer: usernameKey(m.name), text, at, mode: "noise", conversation: groupConversation(next.id) })
      }
    }).pipe(Effect.mapError(storage))

  const receive = (sender: Member, carried: GroupState, left: boolean) =>
    Effect.gen(function*() {
      if (me === undefined) return { _tag: "Refuse", reason: "this node has no username", code: "not-in-group" } satisfies Decision
      const held = yield* store.get(carried.id).pipe(Effect.mapError(storage))
      // The version held here was verified when it was stored (or signed here). A copy that
      // carries that very version (the same signed bytes and signature, as nearly every copy
      // does) needs no second check; any other list is verified.
      const known = (s: GroupState) => (held !== undefined && sameVersion(s, held.state)) || verify(s)
      const decision = decide(held?.state, held?.leftAt !== undefined, carried, sender, me, known)
      const newer = decision._tag === "Accept" ? (decision.updated ? decision.state : undefined) : decision.state
      if (newer !== undefined) yield* store.put(newer, new Date(yield* Clock.currentTimeMillis)).pipe(Effect.mapError(storage))
      if (decision._tag === "Accept" && left && decision.state.creator === me.key) yield* removeLeaver(decision.state, sender)
      return decision
    })

  const wire = (conversation: string | undefined) =>
    Effect.gen(function*() {
      const id = groupIdOf(conversation)
      if (id === undefined) return undefined
      const held = yield* store.get(id).pipe(Effect.orElseSucceed(() => undefined))
      return held === undefined ? undefined : { state: held.state, left: held.leftAt !== undefined }
    })

  return Groups.of({
    list: store.list.pipe(Effect.mapError(storage)),
    resolve: (ref) => resolveIn(store, ref),
    ...changes,
    wire,
    receive,
    me
  })
})

export const layer = Layer.effect(Groups, make)
