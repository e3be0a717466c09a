/**
 * The read-only commands: `peers`, `stats`, `whoami`, `history` (cli.md "Which commands
 * need a running node"). They never write to the data dir, nor create it: at a path where
 * there is none they say so (exit 1), and they work on a data dir made read-only
 * (StoreRead.ts reads it).
 */
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { ALL, groupConversation } from "../domain/Conversation.ts"
import { usernameKey } from "../domain/Presence.ts"
import { UsageError } from "../services/Config.ts"
import type { ConversationEntry } from "../services/History.ts"
import { conversationLine, historyLine, peerLine, type ShownEntry, statsLines, toJson, withVerified } from "../ui/render.ts"
import { base, fail, inCommand, modules, printLine, resolve } from "./base.ts"

/** The data dir's database, read-only, for `use`; `empty` when the data dir has none yet. */
const withDatabase = <A, E, R>(
  dataDir: string,
  use: (store: import("../services/Store.ts").StoreShape) => Effect.Effect<A, E, R>,
  empty: Effect.Effect<A, E, R>
) =>
  Effect.scoped(Effect.gen(function*() {
    const { openReadOnly } = yield* modules.read
    const store = yield* openReadOnly(dataDir)
    return yield* (store === undefined ? empty : use(store))
  }))

export const peers = Command.make("peers", {}, () =>
  Effect.gen(function*() {
    const config = yield* resolve(yield* base)
    const { peerView, readSnapshot } = yield* modules.snapshot
    const list = yield* withDatabase(config.dataDir, (store) => Effect.sync(() => readSnapshot(store, config, new Date())), Effect.succeed([]))
    if (config.json) return yield* printLine(toJson(list.map(peerView)))
    if (list.length === 0) return yield* printLine("no peers known (is a node running with this data dir?)")
    for (const peer of list) yield* printLine(peerLine(peerView(peer)))
  }).pipe(inCommand("peers"))).pipe(Command.withDescription("the peers known now, with status"))

export const stats = Command.make("stats", {}, () =>
  Effect.gen(function*() {
    const config = yield* resolve(yield* base)
    const { readStats } = yield* modules.stats
    const none = fail(`no stats: no node has saved any in ${config.dataDir} (start one with this data dir)`)
    const view = yield* withDatabase(config.dataDir, (store) => readStats(store, Date.now()), none)
    if (config.json) return yield* printLine(toJson(view))
    for (const line of statsLines(view)) yield* printLine(line)
  }).pipe(inCommand("stats"))).pipe(Command.withDescription("what the node running on this data dir has counted"))

export const whoami = Command.make("whoami", {}, () =>
  Effect.gen(function*() {
    const config = yield* resolve(yield* base)
    const { readIdentity, requireDataDir } = yield* modules.read
    yield* requireDataDir(config.dataDir)
    const identity = yield* readIdentity(config.dataDir)
    const info = {
      username: config.name ?? null,
      fingerprint: identity?.fingerprint ?? null,
      id: identity?.id ?? null,
      dataDir: config.dataDir,
      udpPort: config.udpPort,
      tcpPort: config.tcpPort,
      downloads: config.downloads
    }
    if (config.json) return yield* printLine(toJson(info))
    yield* printLine(`username:    ${info.username ?? "(not set: --name, or p2pchat config set name NAME)"}`)
    yield* printLine(`fingerprint: ${info.fingerprint ?? "(no key yet: a node makes it when it first starts here)"}`)
    yield* printLine(`data dir:    ${info.dataDir}`)
    yield* printLine(`ports:       UDP ${info.udpPort}, TCP ${info.tcpPort}`)
    yield* printLine(`downloads:   ${info.downloads}`)
  }).pipe(inCommand("whoami"))).pipe(Command.withDescription("your name, fingerprint, data dir, ports and downloads folder"))

const RELATIVE: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/

/**
 * `--since TIME`: `30m`, `2h`, `1d` ago (units s, m, h, d, w), or an ISO 8601 date or time;
 * one without an offset (`2026-12-01`, `2026-12-01 13:00`) is local time, as `history` prints.
 */
export const parseSince = (text: string, now: number): number | undefined => {
  const t = text.trim()
  const rel = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(t)
  if (rel !== null) return now - Number(rel[1]) * RELATIVE[rel[2]!]!
  const m = ISO.exec(t)
  if (m === null) return undefined
  if (m[7] !== undefined) {
    const ms = Date.parse(m[4] === undefined ? `${m[1]}-${m[2]}-${m[3]}T00:00${m[7]}` : t.replace(" ", "T"))
    return Number.isFinite(ms) ? ms : undefined
  }
  const [y, mo, d, h, mi, s] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0))
  const local = new Date(y!, mo! - 1, d!, h!, mi!, s!)
  // rejects 2026-02-30 and 25:00, which Date would roll over
  return local.getMonth() === mo! - 1 && local.getDate() === d! && local.getHours() === h! ? local.getTime() : undefined
}

const historyFilters = (limit: string | undefined, since: string | undefined) =>
  Effect.gen(function*() {
    const n = limit === undefined ? undefined : /^\s*\d+\s*$/.test(limit) ? Number(limit) : NaN
    if (n !== undefined && !(Number.isSafeInteger(n) && n >= 1)) {
      return yield* new UsageError({ message: `--limit: expected a whole number of at least 1, got '${limit}'` })
    }
    const from = since === undefined ? undefined : parseSince(since, Date.now())
    if (since !== undefined && from === undefined) {
      return yield* new UsageError({
        message: `--since: expected a time ago like 30m, 2h or 1d, or an ISO 8601 date or time like 2026-12-01 or ` +
          `2026-12-01T13:00Z, got '${since}'`
      })
    }
    return { limit: n, since: from }
  })

type Rows =
  | { readonly _tag: "conversation"; readonly rows: ReadonlyArray<ConversationEntry>; readonly group: string | undefined }
  | { readonly _tag: "peer"; readonly rows: ReadonlyArray<ShownEntry> }

type Keep = <H extends { readonly at: string; readonly text: string }>(all: ReadonlyArray<H>) => ReadonlyArray<H>

/** What `history` prints: a peer's messages (or all), or a conversation's (`*all*`, a group's: `#NAME`). */
const historyRows = (store: import("../services/Store.ts").StoreShape, user: string | undefined, keep: Keep) =>
  Effect.gen(function*() {
    const History = yield* modules.history
    const { Store } = yield* modules.store
    const history = yield* History.make.pipe(Effect.provideService(Store, store))
    // `*all*`: each broadcast once, with its recipients
    if (user === ALL) return { _tag: "conversation", rows: keep(yield* history.inConversation(ALL)), group: undefined } as Rows
    if (user?.startsWith("#") === true) {
      // a group's: its name here (or id) is resolved as `send '#NAME'` does, ambiguous names refused
      const { resolveInDb } = yield* modules.groups
      const group = yield* resolveInDb(store.db, user).pipe(Effect.mapError((e) => ({ message: e.message })))
      const rows = keep(yield* history.inConversation(groupConversation(group.state.id)))
      return { _tag: "conversation", rows, group: group.state.name } as Rows
    }
    const verified = new Set((yield* history.pins()).filter((p) => p.verified).map((p) => p.username))
    const all = yield* history.conversation(user === undefined ? undefined : usernameKey(user))
    return { _tag: "peer", rows: withVerified(keep(all), verified) } as Rows
  })

export const history = Command.make("history", {
  user: Argument.String("user").pipe(
    Argument.withDescription("whose conversation (all when omitted; '*all*': the broadcasts; '#NAME': a group's)"),
    Argument.optional
  ),
  limit: Flag.String("limit").pipe(Flag.withDescription("only the last N messages (of those the other filters keep)"), Flag.optional),
  since: Flag.String("since").pipe(Flag.withDescription("only messages since TIME: 30m, 2h, 1d ago, or an ISO 8601 date or time"), Flag.optional),
  grep: Flag.String("grep").pipe(Flag.withDescription("only messages whose text contains TEXT (any case)"), Flag.optional)
}, (p) =>
  Effect.gen(function*() {
    const filters = yield* historyFilters(Option.getOrUndefined(p.limit), Option.getOrUndefined(p.since))
    const config = yield* resolve(yield* base)
    const user = Option.getOrUndefined(p.user)
    const grep = Option.getOrUndefined(p.grep)?.toLowerCase()
    const keep: Keep = (all) => {
      const kept = all.filter((h) =>
        (filters.since === undefined || Date.parse(h.at) >= filters.since) &&
        (grep === undefined || h.text.toLowerCase().includes(grep))
      )
      return filters.limit === undefined ? kept : kept.slice(-filters.limit)
    }
    // a data dir without a database has no messages, and no group
    const none = user?.startsWith("#") === true
      ? fail(`no group '${user.slice(1)}' here; \`p2pchat group list\` lists them`)
      : Effect.succeed<Rows>({ _tag: "peer", rows: [] })
    const entries = yield* withDatabase(config.dataDir, (store) => historyRows(store, user, keep), none)
    if (config.json) return yield* printLine(toJson(entries.rows))
    if (entries.rows.length === 0) return yield* printLine("no messages")
    if (entries._tag === "conversation") for (const c of entries.rows) yield* printLine(conversationLine(c, entries.group))
    else for (const h of entries.rows) yield* printLine(historyLine(h))
  }).pipe(inCommand("history"))).pipe(Command.withDescription("the conversation with USER, or all; --limit, --since, --grep filter it"))
