/**
 * How a group is shown, by `p2pchat group` and the console's `group` (cli.md "group"): its
 * summary line, its members with their fingerprints, and the JSON of `group list --json`
 * and `group show --json`.
 */
import { fingerprintOfId } from "../domain/Fingerprint.ts"
import { creatorOf } from "../domain/Group.ts"
import type { StoredGroup } from "../services/GroupStore.ts"
import { clean } from "./render.ts"

/** `group list --json`: one object per group. */
export const groupSummary = (g: StoredGroup) => ({
  id: g.state.id,
  name: g.state.name,
  version: g.state.version,
  creator: creatorOf(g.state)?.name ?? null,
  members: g.state.members.map((m) => m.name),
  left: g.leftAt !== undefined
})

/** `group show --json`: the group with each member's key and fingerprint. */
export const groupView = (g: StoredGroup) => ({
  ...groupSummary(g),
  members: g.state.members.map((m) => ({ name: m.name, key: m.key, fingerprint: fingerprintOfId(m.key) })),
  ...(g.leftAt === undefined ? {} : { leftAt: g.leftAt })
})

/** A group as a line of `group list`: `#team  3 member(s), version 2, id ...`. */
export const summaryLine = (g: StoredGroup): string =>
  `#${clean(g.state.name)}  ${g.state.members.length} member(s), version ${g.state.version}, id ${g.state.id}` +
  (g.leftAt === undefined ? "" : " (left)")

/** `group show`: the summary line, then one line per member with its fingerprint. */
export const showLines = (g: StoredGroup): ReadonlyArray<string> => [
  summaryLine(g),
  ...g.state.members.map((m) => `  ${clean(m.name)}${m.key === g.state.creator ? " (creator)" : ""}  ${fingerprintOfId(m.key)}`)
]
