/**
 * The live registry of peers heard on the LAN, with their away and expiry timers and a
 * stream of changes. Ages are measured on the monotonic clock, so a wall-clock jump
 * cannot make a peer expire early or linger; wall time is only for display.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { identityOf, livenessAt, nextTransitionAge, type Peer, type Timers } from "../domain/Peer.ts"
import { type Announcement, type Bye, isP2pchat, usernameKey } from "../domain/Presence.ts"
import { fingerprintOfId } from "../domain/Fingerprint.ts"
import { Config, type NodeConfig } from "./Config.ts"
import { Events, type UiEvent } from "./Events.ts"

export type RegistryChange =
  | { readonly _tag: "Appeared"; readonly peer: Peer }
  /** A known peer announced again, with nothing else changed. */
  | { readonly _tag: "Heard"; readonly peer: Peer }
  | { readonly _tag: "StatusChanged"; readonly peer: Peer }
  | { readonly _tag: "Moved"; readonly peer: Peer; readonly from: string }
  | { readonly _tag: "Expired"; readonly peer: Peer }
  | { readonly _tag: "Left"; readonly peer: Peer }
  | { readonly _tag: "Conflict"; readonly peer: Peer; readonly otherId: string; readonly otherAddress: string }

/** What hearing an announcement did. `new` is a peer not known before (or back after expiring). */
export type Heard = "new" | "known" | "conflict" | "full" | "address-full"

export interface RegistryStats {
  readonly peers: number
  readonly rejectedFull: number
  readonly rejectedAddressFull: number
  readonly conflicts: number
}

export class PeerRegistry extends Context.Service<PeerRegistry, {
  readonly heard: (announcement: Announcement, address: string, udpPort: number) => Effect.Effect<Heard>
  readonly bye: (bye: Bye, address: string) => Effect.Effect<boolean>
  readonly list: Effect.Effect<ReadonlyArray<Peer>>
  readonly lookup: (username: string) => Effect.Effect<Option.Option<Peer>>
  readonly lookupByAddress: (address: string) => Effect.Effect<Option.Option<Peer>>
  readonly stats: Effect.Effect<RegistryStats>
  /** Changes from the moment of subscription. */
  readonly changes: Effect.Effect<Stream.Stream<RegistryChange>, never, Scope.Scope>
}>()("p2pchat/PeerRegistry") {}

interface Entry {
  peer: Peer
  /** Monotonic milliseconds of the last announcement. */
  seenAt: number
}

/** The registry's mutable state, owned by one `make`. */
interface Table {
  readonly timers: Timers
  readonly limits: Pick<NodeConfig, "maxPeers" | "maxPeersPerAddress">
  readonly emit: (change: RegistryChange) => void
  readonly entries: Map<string, Entry>
  /** Names per source address: one host cannot fill the registry and push real peers out. */
  readonly namesAt: Map<string, number>
  rejectedFull: number
  rejectedAddressFull: number
  conflicts: number
}

/** The fields an announcement sets, on a new entry and on a known one alike. */
type Fields = Omit<Peer, "firstSeen" | "conflict">

const monotonicMillis = Effect.map(Clock.monotonicTimeNanos, (n) => Number(n / 1_000_000n))

const countAt = (table: Table, address: string, delta: number): void => {
  const n = (table.namesAt.get(address) ?? 0) + delta
  if (n <= 0) table.namesAt.delete(address)
  else table.namesAt.set(address, n)
}

/** Takes an entry out of the registry and says why: it expired, or its peer said bye. */
const remove = (table: Table, key: string, entry: Entry, why: "Expired" | "Left"): void => {
  table.entries.delete(key)
  countAt(table, entry.peer.address, -1)
  table.emit({ _tag: why, peer: entry.peer })
}

/** Brings every status up to `now`; returns when the next change is due. */
const sweep = (table: Table, now: number): number | undefined => {
  let next: number | undefined
  for (const [key, entry] of table.entries) {
    const age = now - entry.seenAt
    const live = livenessAt(age, entry.peer.manualAway, table.timers)
    if (live === "expired") {
      remove(table, key, entry, "Expired")
      continue
    }
    if (live !== entry.peer.status) {
      entry.peer = { ...entry.peer, status: live }
      table.emit({ _tag: "StatusChanged", peer: entry.peer })
    }
    const due = nextTransitionAge(age, entry.peer.manualAway, table.timers)
    if (due !== undefined) next = Math.min(next ?? Infinity, entry.seenAt + due)
  }
  return next
}

// One fiber keeps statuses current. It sleeps until the next transition, but never
// longer than the away timer, so a peer heard meanwhile is seen in time; and never
// less than 20 ms, so that many peers with nearby deadlines cost few sweeps.
const sweeper = (table: Table) =>
  Effect.gen(function*() {
    const { awayAfterMs } = table.timers
    for (;;) {
      const now = yield* monotonicMillis
      const next = sweep(table, now)
      const wait = Math.min(next === undefined ? Infinity : next - now, awayAfterMs)
      yield* Effect.sleep(Duration.millis(Math.max(wait, Math.min(20, awayAfterMs))))
    }
  })

/** A name not in the registry: admitted unless the registry or its sender's share is full. */
const admit = (table: Table, fields: Fields, now: number): Heard => {
  if (table.entries.size >= table.limits.maxPeers) {
    table.rejectedFull++
    return "full"
  }
  if ((table.namesAt.get(fields.address) ?? 0) >= table.limits.maxPeersPerAddress) {
    table.rejectedAddressFull++
    return "address-full"
  }
  const peer: Peer = { ...fields, firstSeen: fields.lastSeen, conflict: undefined }
  table.entries.set(fields.key, { peer, seenAt: now })
  countAt(table, fields.address, 1)
  table.emit({ _tag: "Appeared", peer })
  return "new"
}

/** Same name, another identity: keep the one we know, tell the user once. */
const conflict = (table: Table, entry: Entry, other: string, address: string): Heard => {
  const before = entry.peer
  table.conflicts++
  // The entry remembers the last other identity it reported, so this state goes with it.
  if (before.conflict !== other) {
    entry.peer = { ...before, conflict: other }
    table.emit({ _tag: "Conflict", peer: entry.peer, otherId: other, otherAddress: address })
  }
  return "conflict"
}

/** A known peer announced again: its fields, its address count, and what changed. */
const refresh = (table: Table, entry: Entry, fields: Fields, now: number): Heard => {
  const before = entry.peer
  entry.seenAt = now
  entry.peer = { ...before, ...fields }
  if (before.address !== fields.address) {
    countAt(table, before.address, -1)
    countAt(table, fields.address, 1)
  }
  if (before.address !== fields.address || before.port !== entry.peer.port) {
    table.emit({ _tag: "Moved", peer: entry.peer, from: `${before.address}:${before.port}` })
  }
  if (before.status !== entry.peer.status) table.emit({ _tag: "StatusChanged", peer: entry.peer })
  else table.emit({ _tag: "Heard", peer: entry.peer })
  return "known"
}

/** What an announcement heard at monotonic `now` (wall time `wall`) does to the registry. */
const hear = (table: Table, a: Announcement, address: string, udpPort: number, now: number, wall: Date): Heard => {
  const key = usernameKey(a.username)
  const existing = table.entries.get(key)
  if (existing !== undefined && now - existing.seenAt > table.timers.expireAfterMs) {
    // Expired while the sweeper slept: it is a newcomer again.
    remove(table, key, existing, "Expired")
  }
  const manualAway = a.status === "away"
  const fields: Fields = {
    username: a.username,
    key,
    address,
    port: a.port ?? 6001,
    udpPort,
    proto: isP2pchat(a.proto) ? "p2pchat/1" : "classic",
    id: a.id,
    manualAway,
    lastSeen: wall,
    status: livenessAt(0, manualAway, table.timers) as Peer["status"]
  }
  const entry = table.entries.get(key)
  if (entry === undefined) return admit(table, fields, now)
  const other = identityOf(a.id)
  if (identityOf(entry.peer.id) !== other) return conflict(table, entry, other, address)
  return refresh(table, entry, fields, now)
}

/**
 * A bye counts only from the peer's own address, with the identity we know: the id is public
 * (every announcement carries it), so without the address any host could remove any peer.
 */
const leave = (table: Table, b: Bye, address: string): boolean => {
  const key = usernameKey(b.bye)
  const entry = table.entries.get(key)
  if (entry === undefined || entry.peer.address !== address || identityOf(entry.peer.id) !== identityOf(b.id)) {
    return false
  }
  remove(table, key, entry, "Left")
  return true
}

/** The live registry: its state, the sweeper that keeps it current, its change stream. */
export const make: Effect.Effect<PeerRegistry["Service"], never, Config | Scope.Scope> = Effect.gen(function*() {
  const config = yield* Config
  const hub = yield* PubSub.unbounded<RegistryChange>()
  yield* Effect.addFinalizer(() => PubSub.shutdown(hub))
  const table: Table = {
    timers: { awayAfterMs: config.awayAfterMs, expireAfterMs: config.expireAfterMs },
    limits: config,
    emit: (change) => PubSub.publishUnsafe(hub, change),
    entries: new Map(),
    namesAt: new Map(),
    rejectedFull: 0,
    rejectedAddressFull: 0,
    conflicts: 0
  }
  yield* Effect.forkScoped(sweeper(table))
  const current = Effect.map(monotonicMillis, (now) => {
    sweep(table, now)
    return table.entries
  })
  return PeerRegistry.of({
    heard: (a, address, udpPort) =>
      Effect.gen(function*() {
        const now = yield* monotonicMillis
        const wall = new Date(yield* Clock.currentTimeMillis)
        return hear(table, a, address, udpPort, now, wall)
      }),
    bye: (b, address) => Effect.sync(() => leave(table, b, address)),
    list: Effect.map(current, (m) => [...m.values()].map((e) => e.peer).sort((x, y) => x.key.localeCompare(y.key))),
    lookup: (username) => Effect.map(current, (m) => Option.fromNullishOr(m.get(usernameKey(username))?.peer)),
    lookupByAddress: (address) =>
      Effect.map(current, (m) => {
        for (const e of m.values()) if (e.peer.address === address) return Option.some(e.peer)
        return Option.none()
      }),
    stats: Effect.sync(() => ({
      peers: table.entries.size,
      rejectedFull: table.rejectedFull,
      rejectedAddressFull: table.rejectedAddressFull,
      conflicts: table.conflicts
    })),
    changes: Effect.map(PubSub.subscribe(hub), Stream.fromSubscription)
  })
})

export const layer: Layer.Layer<PeerRegistry, never, Config> = Layer.effect(PeerRegistry, make)

/** A registry change as the user interface shows it; none for a peer merely heard again. */
export const changeToEvent = (change: RegistryChange, fingerprintOf = fingerprintOfId): UiEvent | undefined => {
  if (change._tag === "Heard") return undefined
  const p = change.peer
  const base = { event: "peer" as const, username: p.username, address: p.address, port: p.port, proto: p.proto, fingerprint: fingerprintOf(p.id) }
  switch (change._tag) {
    case "Appeared":
    case "StatusChanged":
    case "Moved":
      return { ...base, status: p.status }
    case "Expired":
      return { ...base, status: "expired" }
    case "Left":
      return { ...base, status: "left" }
    case "Conflict":
      return {
        event: "warning",
        message: `two nodes announce the name '${p.username}': the known one at ${p.address} and another at ` +
          `${change.otherAddress}${change.otherId === "classic" ? " (classic)" : ""}; messages go to the known one`
      }
  }
}

/** Shows registry changes to the user, through Events. */
export const eventsLayer: Layer.Layer<never, never, PeerRegistry | Events> = Layer.effectDiscard(
  Effect.gen(function*() {
    const registry = yield* PeerRegistry
    const events = yield* Events
    const changes = yield* registry.changes
    yield* Effect.forkScoped(Stream.runForEach(changes, (c) => {
      const event = changeToEvent(c)
      return event === undefined ? Effect.void : events.publish(event)
    }))
  })
)
