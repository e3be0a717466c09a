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
import { decide, identityOf, livenessAt, nextTransitionAge, type Peer, type Timers } from "../domain/Peer.ts"
import { type Announcement, type Bye, isP2pchat, usernameKey } from "../domain/Presence.ts"
import { LookIndex } from "../domain/Confusables.ts"
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
  | {
    readonly _tag: "Conflict"
    readonly peer: Peer
    readonly otherId: string
    readonly otherAddress: string
    /** Whether the other claim was signed by its key (an unsigned one may be anyone's). */
    readonly signed: boolean
  }

/** What hearing an announcement did. `new` is a peer not known before (or back after expiring). */
export type Heard = "new" | "known" | "conflict" | "full" | "address-full"

export interface RegistryStats {
  readonly peers: number
  readonly rejectedFull: number
  readonly rejectedAddressFull: number
  readonly conflicts: number
}

export class PeerRegistry extends Context.Service<PeerRegistry, {
  /**
   * An announcement from `address`; `signed` when its signature by its `id` was verified
   * (and its stamp was fresh: see `fresh`), unsigned when not said.
   */
  readonly heard: (announcement: Announcement, address: string, udpPort: number, signed?: boolean) => Effect.Effect<Heard>
  readonly bye: (bye: Bye, address: string, signed?: boolean) => Effect.Effect<boolean>
  /**
   * Whether stamp `ts` of key `id` is newer than the last one accepted from it in the last
   * `expireAfter` (older memories do not count: a node whose clock went back is heard again
   * once they fade). Cheap: it goes before the signature is checked.
   */
  readonly fresh: (id: string, ts: number) => Effect.Effect<boolean>
  readonly list: Effect.Effect<ReadonlyArray<Peer>>
  readonly lookup: (username: string) => Effect.Effect<Option.Option<Peer>>
  readonly lookupByAddress: (address: string) => Effect.Effect<Option.Option<Peer>>
  /** The peers whose names a person could take for `name` (Unicode TR39 skeletons), not `name` itself. */
  readonly lookAlikes: (name: string) => Effect.Effect<ReadonlyArray<Peer>>
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
  /** The names by confusable key (Confusables.ts): look-alikes without a scan. */
  readonly looks: LookIndex
  /** The last stamp accepted from each key, and when (monotonic ms); kept past the entry. */
  readonly stamps: Map<string, { ts: number; at: number }>
  rejectedFull: number
  rejectedAddressFull: number
  conflicts: number
}

/** The fields an announcement sets, on a new entry and on a known one alike. */
type Fields = Omit<Peer, "firstSeen" | "conflict">

/**
 * At least this many stamps are remembered (twice the registry's size if that is more);
 * the least recently refreshed go first, and a live peer refreshes its own every interval.
 */
const MIN_STAMPS = 8192

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
  table.looks.remove(entry.peer.username)
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
  table.looks.add(peer.username)
  table.emit({ _tag: "Appeared", peer })
  return "new"
}

/**
 * Same name, another identity, or an unsigned claim on a signed entry: keep the one we know,
 * tell the user once per claimant (identity and address).
 */
const conflict = (table: Table, entry: Entry, fields: Fields): Heard => {
  const before = entry.peer
  const other = identityOf(fields.id)
  table.conflicts++
  // The entry remembers the last claimant it reported, so this state goes with it.
  const claimant = `${other} ${fields.address}${fields.signed ? "" : " unsigned"}`
  if (before.conflict !== claimant) {
    entry.peer = { ...before, conflict: claimant }
    table.emit({ _tag: "Conflict", peer: entry.peer, otherId: other, otherAddress: fields.address, signed: fields.signed })
  }
  return "conflict"
}

/** A known peer announced again: its fields, its address count, and what changed. */
const refresh = (table: Table, entry: Entry, fields: Fields, now: number): Heard => {
  const before = entry.peer
  entry.seenAt = now
  // A signed entry stays signed: its key, not this datagram, decided it was the peer.
  entry.peer = { ...before, ...fields, signed: before.signed || fields.signed }
  if (before.address !== fields.address) {
    countAt(table, before.address, -1)
    countAt(table, fields.address, 1)
  }
  if (before.username !== fields.username) {
    table.looks.remove(before.username)
    table.looks.add(entry.peer.username)
  }
  if (before.address !== fields.address || before.port !== entry.peer.port || before.id !== entry.peer.id) {
    table.emit({ _tag: "Moved", peer: entry.peer, from: `${before.address}:${before.port}` })
  }
  if (before.status !== entry.peer.status) table.emit({ _tag: "StatusChanged", peer: entry.peer })
  else table.emit({ _tag: "Heard", peer: entry.peer })
  return "known"
}

/** What an announcement heard at monotonic `now` (wall time `wall`) does to the registry. */
const hear = (
  table: Table,
  a: Announcement,
  origin: { readonly address: string; readonly udpPort: number; readonly signed: boolean },
  now: number,
  wall: Date
): Heard => {
  const { address, udpPort, signed } = origin
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
    // `proto` is not signed; a signature is: only a p2pchat node signs, so a signed
    // announcement cannot be made to pass for a classic peer's (a downgrade).
    proto: signed || isP2pchat(a.proto) ? "p2pchat/1" : "classic",
    id: a.id,
    manualAway,
    lastSeen: wall,
    status: livenessAt(0, manualAway, table.timers) as Peer["status"],
    signed
  }
  const entry = table.entries.get(key)
  if (entry === undefined) return admit(table, fields, now)
  return decide(entry.peer, fields) === "keep" ? conflict(table, entry, fields) : refresh(table, entry, fields, now)
}

/**
 * A bye removes the entry of its identity. A signed bye counts from anywhere (its key said
 * it); an unsigned one only for an unsigned entry and from that peer's own address (the id is
 * public: without the address any host could remove any peer), never for a signed entry.
 */
const leave = (table: Table, b: Bye, address: string, signed: boolean): boolean => {
  const key = usernameKey(b.bye)
  const entry = table.entries.get(key)
  if (entry === undefined || identityOf(entry.peer.id) !== identityOf(b.id)) return false
  if (!signed && (entry.peer.signed || entry.peer.address !== address)) return false
  remove(table, key, entry, "Left")
  return true
}

/** Whether a stamp is newer than the last one remembered (and not faded) for its key. */
const isFresh = (table: Table, id: string, ts: number, now: number): boolean => {
  const last = table.stamps.get(id)
  return last === undefined || ts > last.ts || now - last.at > table.timers.expireAfterMs
}

/** Remembers the stamp of an accepted signed datagram. */
const remember = (table: Table, id: string, ts: number, now: number): void => {
  table.stamps.delete(id)
  if (table.stamps.size >= Math.max(MIN_STAMPS, 2 * table.limits.maxPeers)) table.stamps.delete(table.stamps.keys().next().value!)
  table.stamps.set(id, { ts, at: now })
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
    looks: new LookIndex(),
    stamps: new Map(),
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
    heard: (a, address, udpPort, signed = false) =>
      Effect.gen(function*() {
        const now = yield* monotonicMillis
        const wall = new Date(yield* Clock.currentTimeMillis)
        const result = hear(table, a, { address, udpPort, signed }, now, wall)
        // Only a stamp that changed the registry is kept: refused claims (a full registry,
        // another key's name) cannot crowd real peers' stamps out of the memory.
        if (signed && (result === "new" || result === "known")) remember(table, a.id!, a.ts!, now)
        return result
      }),
    bye: (b, address, signed = false) =>
      Effect.map(monotonicMillis, (now) => {
        const left = leave(table, b, address, signed)
        if (signed && left) remember(table, b.id!, b.ts!, now)
        return left
      }),
    fresh: (id, ts) => Effect.map(monotonicMillis, (now) => isFresh(table, id, ts, now)),
    list: Effect.map(current, (m) => [...m.values()].map((e) => e.peer).sort((x, y) => x.key.localeCompare(y.key))),
    lookup: (username) => Effect.map(current, (m) => Option.fromNullishOr(m.get(usernameKey(username))?.peer)),
    lookupByAddress: (address) =>
      Effect.map(current, (m) => {
        for (const e of m.values()) if (e.peer.address === address) return Option.some(e.peer)
        return Option.none()
      }),
    lookAlikes: (name) =>
      Effect.map(current, (m) => table.looks.find(name).flatMap((k) => m.get(k)?.peer ?? [])),
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
        message: change.signed || !p.signed
          ? `two nodes announce the name '${p.username}': the known one at ${p.address} and another at ` +
            `${change.otherAddress}${change.otherId === "classic" ? " (classic)" : ""}; messages go to the known one`
          : `a node at ${change.otherAddress} claims the name '${p.username}' without ${p.username}'s signature ` +
            `(an impostor, or an old program): ignored; messages go to ${p.username} at ${p.address}`
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
