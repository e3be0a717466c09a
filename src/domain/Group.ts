/**
 * Groups (protocol.md 5.5): a named list of members, each a username with the key pinned for
 * it, made and changed by one creator, who signs every version of the list with its identity
 * key (XEdDSA, as presence is signed). Any member may carry the signed list to any other, so
 * a member who was away catches up from whichever copy reaches it first.
 *
 * The rules here are pure: which of two lists wins, whether a received copy is accepted, and
 * what a change by the creator gives.
 */
import { createHash, randomBytes } from "node:crypto"
import * as Schema from "effect/Schema"
import type { AckRefusal } from "./Frames.ts"
import { PublicKeyId, Signature, Username, usernameKey } from "./Presence.ts"

/** The most members a group has (its creator included). */
export const MAX_MEMBERS = 256

/** A group id: 128 random bits, base64url without padding (22 characters). */
export const GroupId = Schema.String.check(
  Schema.makeFilter((s: string) => /^[A-Za-z0-9_-]{21}[AQgw]$/.test(s) || "expected a group id (22 characters of base64url)")
)
export const newGroupId = (): string => randomBytes(16).toString("base64url")

export const Member = Schema.Struct({ name: Username, key: PublicKeyId })
export type Member = typeof Member.Type

/** One version of a group as the wire carries it (the `group` field of a secure `msg`). */
export const GroupState = Schema.Struct({
  id: GroupId,
  name: Username,
  version: Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
  /** The creator's key: the only key whose signature makes a version. */
  creator: PublicKeyId,
  members: Schema.Array(Member).check(Schema.isMaxLength(MAX_MEMBERS)),
  sig: Signature
})
export type GroupState = typeof GroupState.Type
export type UnsignedState = Omit<GroupState, "sig">

/** The bytes the creator signs: the UTF-8 JSON of one array, labelled so no other signature passes for it. */
export const groupSignedBytes = (s: UnsignedState): Uint8Array =>
  new TextEncoder().encode(JSON.stringify(["p2pchat/1 group", s.id, s.name, s.version, s.creator, s.members.map((m) => [m.name, m.key])]))

const digest = (s: UnsignedState): string => createHash("sha256").update(groupSignedBytes(s)).digest("hex")

/**
 * Whether `a` replaces `b`: a higher version wins; two different lists with one version
 * (which one creator never makes, but a restored backup could) are ordered by the SHA-256
 * of their signed bytes, the lower winning, so that every member keeps the same one.
 */
export const supersedes = (a: UnsignedState, b: UnsignedState): boolean =>
  a.version > b.version || (a.version === b.version && !sameSigned(a, b) && digest(a) < digest(b))

/** Whether `a` and `b` sign the same bytes (groupSignedBytes): every field but the signature equal. */
export const sameSigned = (a: UnsignedState, b: UnsignedState): boolean =>
  a.id === b.id && a.name === b.name && a.version === b.version && a.creator === b.creator &&
  a.members.length === b.members.length &&
  a.members.every((m, i) => m.name === b.members[i]!.name && m.key === b.members[i]!.key)

/** Whether `a` is the very version `b` is: the same signed bytes and the same signature. */
export const sameVersion = (a: GroupState, b: GroupState): boolean => a.sig === b.sig && sameSigned(a, b)

export const memberOf = (s: Pick<UnsignedState, "members">, name: string): Member | undefined => {
  const key = usernameKey(name)
  return s.members.find((m) => usernameKey(m.name) === key)
}

/** Whether `who` (a name and the key it proved) is a member of `s` with that very key. */
export const isMember = (s: Pick<UnsignedState, "members">, who: Member): boolean => memberOf(s, who.name)?.key === who.key

export const creatorOf = (s: UnsignedState): Member | undefined => s.members.find((m) => m.key === s.creator)

/** What a received copy of a group message comes to. */
export type Decision =
  | { readonly _tag: "Accept"; readonly state: GroupState; readonly updated: boolean }
  | { readonly _tag: "Refuse"; readonly reason: string; readonly code: AckRefusal; readonly state?: GroupState | undefined }

/**
 * The receiver's rule (protocol.md 5.5). `local`: the version this node holds (none for a
 * group it has not heard of); `left`: this node's user left it; `carried`: the copy's list;
 * `sender`: the name and key its secure session proved; `me`: this node's name and key.
 * `verify` checks the creator's signature. A refused copy may still bring a newer list
 * (`state`), which the caller stores.
 */
export const decide = (
  local: GroupState | undefined,
  left: boolean,
  carried: GroupState,
  sender: Member,
  me: Member,
  verify: (s: GroupState) => boolean
): Decision => {
  if (!verify(carried)) return { _tag: "Refuse", reason: "its member list is not signed by the group's creator", code: "bad-list" }
  if (creatorOf(carried) === undefined) return { _tag: "Refuse", reason: "its member list does not hold its creator", code: "bad-list" }
  if (local !== undefined && local.creator !== carried.creator) {
    return { _tag: "Refuse", reason: "another group, by another creator, holds that id here", code: "other-group" }
  }
  if (local === undefined && !isMember(carried, me)) return { _tag: "Refuse", reason: "this node is not one of its members", code: "not-in-group" }
  const updated = local === undefined || supersedes(carried, local)
  const state = updated ? carried : local
  const stored = updated ? state : undefined
  if (left) return { _tag: "Refuse", reason: "you left this group", code: "left", state: stored }
  if (!isMember(state, sender)) {
    return { _tag: "Refuse", reason: `${sender.name} is not a member in this node's list (version ${state.version})`, code: "not-a-member", state: stored }
  }
  return { _tag: "Accept", state, updated }
}

/** Why a change by `by` to `s` is refused, if it is: only the creator adds and removes. */
export const changeProblem = (s: UnsignedState, by: Member, add: ReadonlyArray<Member>, remove: ReadonlyArray<string>): string | undefined => {
  if (s.creator !== by.key) return `only the group's creator (${creatorOf(s)?.name ?? "?"}) adds and removes members`
  for (const name of remove) {
    const m = memberOf(s, name)
    if (m === undefined) return `${name} is not a member of ${s.name}`
    if (m.key === s.creator) return "the creator cannot be removed"
  }
  for (const m of add) if (memberOf(s, m.name) !== undefined) return `${m.name} is a member of ${s.name} already`
  if (s.members.length + add.length - remove.length > MAX_MEMBERS) return `a group has at most ${MAX_MEMBERS} members`
  return undefined
}

/** The next version: `add` appended, `remove` dropped (unsigned: the creator signs it). */
export const changed = (s: UnsignedState, add: ReadonlyArray<Member>, remove: ReadonlyArray<string>): UnsignedState => {
  const gone = new Set(remove.map(usernameKey))
  return { ...s, version: s.version + 1, members: [...s.members.filter((m) => !gone.has(usernameKey(m.name))), ...add] }
}
