/**
 * The groups of a node in its Store (StoreSchema step 5): the newest signed version of each
 * group it is in, or was in (`leftAt`), with its members in order. A version is replaced only
 * by one that supersedes it (domain/Group.ts), checked inside the write transaction, so two
 * processes on one data dir cannot put an older version back.
 *
 * Every copy of a group message reads its group (the sender, to carry the list; a member,
 * to check the list a copy carries), so the groups read are kept in memory. A kept one is
 * used while SQLite's `data_version` is unchanged (it changes when another connection, such
 * as another process on the data dir, commits anything) and this store wrote nothing to it;
 * one GroupStore per connection writes groups (Groups.ts's).
 */
import * as Effect from "effect/Effect"
import { type GroupState, supersedes } from "../domain/Group.ts"
import { usernameKey } from "../domain/Presence.ts"
import { HistoryError } from "./History.ts"
import type { SqlDb } from "./Sql.ts"

/** A group as this node holds it. */
export interface StoredGroup {
  readonly state: GroupState
  /** When this node's user left it (ISO 8601); undefined while a member. */
  readonly leftAt?: string | undefined
}

interface GroupRow {
  readonly id: string
  readonly name: string
  readonly version: number
  readonly creator: string
  readonly sig: string
  readonly left_at: string | null
}

/** How many groups (held or not) are kept in memory at most. */
const MAX_KEPT = 1024

const attempt = <A>(what: string, f: () => A): Effect.Effect<A, HistoryError> =>
  Effect.try({ try: f, catch: (e) => new HistoryError({ message: `${what}: ${e instanceof Error ? e.message : String(e)}` }) })

/** The groups read, kept while `dataVersion` gives the same number (see the top of this file). */
const makeKept = (dataVersion: () => number, get: (id: string) => StoredGroup | undefined) => {
  // a group not held here is kept too (as undefined): a copy for it reads nothing again
  const kept = { version: Number.NaN, groups: new Map<string, StoredGroup | undefined>() }
  const cachedGet = (id: string): StoredGroup | undefined => {
    const version = dataVersion()
    if (version !== kept.version) {
      kept.groups.clear()
      kept.version = version
    }
    if (kept.groups.has(id)) return kept.groups.get(id)
    const group = get(id)
    if (kept.groups.size >= MAX_KEPT) kept.groups.clear()
    kept.groups.set(id, group)
    return group
  }
  /** A write of this store: what it changes is read again. */
  const writing = <A>(id: string, f: () => A): A => {
    try {
      return f()
    } finally {
      kept.groups.delete(id)
    }
  }
  return { cachedGet, writing }
}

export const makeGroupStore = (db: SqlDb) => {
  const s = {
    one: db.prepare<{ id: string }, GroupRow>(`SELECT id, name, version, creator, sig, left_at FROM groups WHERE id = @id`),
    all: db.prepare<[], GroupRow>(`SELECT id, name, version, creator, sig, left_at FROM groups ORDER BY name_key, id`),
    named: db.prepare<{ key: string }, GroupRow>(
      `SELECT id, name, version, creator, sig, left_at FROM groups WHERE name_key = @key ORDER BY id`
    ),
    members: db.prepare<{ id: string }, { name: string; key: string }>(
      `SELECT name, key FROM group_members WHERE group_id = @id ORDER BY position`
    ),
    upsert: db.prepare<{ id: string; name: string; key: string; version: number; creator: string; sig: string; at: string }>(
      `INSERT INTO groups (id, name, name_key, version, creator, sig, updated_at)
       VALUES (@id, @name, @key, @version, @creator, @sig, @at)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key, version = excluded.version,
         creator = excluded.creator, sig = excluded.sig, updated_at = excluded.updated_at`
    ),
    clearMembers: db.prepare<{ id: string }>(`DELETE FROM group_members WHERE group_id = @id`),
    addMember: db.prepare<{ id: string; position: number; name: string; key: string }>(
      `INSERT INTO group_members (group_id, position, name, key) VALUES (@id, @position, @name, @key)`
    ),
    setLeft: db.prepare<{ id: string; at: string }>(`UPDATE groups SET left_at = @at WHERE id = @id`),
    dataVersion: db.prepare<[], { data_version: number }>(`PRAGMA data_version`)
  }

  const read = (row: GroupRow): StoredGroup => ({
    state: {
      id: row.id,
      name: row.name,
      version: row.version,
      creator: row.creator,
      sig: row.sig,
      members: s.members.all({ id: row.id }).map((m) => ({ name: m.name, key: m.key }))
    },
    leftAt: row.left_at ?? undefined
  })

  const get = (id: string): StoredGroup | undefined => {
    const row = s.one.get({ id })
    return row === undefined ? undefined : read(row)
  }
  const { cachedGet, writing } = makeKept(() => s.dataVersion.get()?.data_version ?? Number.NaN, get)

  return {
    get: (id: string) => attempt("could not read groups", () => cachedGet(id)),
    list: attempt("could not read groups", () => s.all.all().map(read)),
    named: (name: string) => attempt("could not read groups", () => s.named.all({ key: usernameKey(name) }).map(read)),
    /** Stores `state` unless the version held supersedes it or is it; true when stored. */
    put: (state: GroupState, at: Date) =>
      attempt("could not store the group", () =>
        writing(state.id, () =>
          db.transaction(() => {
            const held = get(state.id)
            if (held !== undefined && !supersedes(state, held.state)) return false
            s.upsert.run({ ...state, key: usernameKey(state.name), at: at.toISOString() })
            s.clearMembers.run({ id: state.id })
            state.members.forEach((m, position) => s.addMember.run({ id: state.id, position, name: m.name, key: m.key }))
            return true
          }, "immediate"))),
    leave: (id: string, at: Date) =>
      attempt("could not store the group", () => writing(id, () => void s.setLeft.run({ id, at: at.toISOString() })))
  }
}

export type GroupStore = ReturnType<typeof makeGroupStore>
