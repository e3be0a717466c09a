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
import { identityOf, livenessAt, nextTransitionAge, type Peer, type Proto } from "../domain/Peer.ts"
import { type Announcement, type Bye, isP2pchat, usernameKey } from "../domain/Presence.ts"
import { fingerprintOfId } from "../domain/Fingerprint.ts"
import { Config } from "./Config.ts"
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

const monotonicMillis = Effect.map(Clock.monotonicTimeNanos, (n) => Number(n / 1_000_000n))

export const peerRegistryLayer: Layer.Layer<PeerRegistry, never, Config> = Layer.effect(
  PeerRegistry,
  Effect.gen(function*() {
    const config = yield* Config
    const timers = { awayAfterMs: config.awayAfterMs, expireAfterMs: config.expireAfterMs }
    const entries = new Map<string, Entry>()
    // Names per source address: one host cannot fill the registry and push real peers out.
    const namesAt = new Map<string, number>()
    const countAt = (address: string, delta: number) => {
      const n = (namesAt.get(address) ?? 0) + delta
      if (n <= 0) namesAt.delete(address)
      else namesAt.set(address, n)
    }
    let rejectedFull = 0
    let rejectedAddressFull = 0
    let conflicts = 0
    const hub = yield* PubSub.unbounded<RegistryChange>()
    yield* Effect.addFinalizer(() => PubSub.shutdown(hub))
    const emit = (change: RegistryChange) => PubSub.publishUnsafe(hub, change)

    /** Brings every status up to `now`; returns when the next change is due. */
    const sweep = (now: number): number | undefined => {
      let next: number | undefined
      for (const [key, entry] of entries) {
        const age = now - entry.seenAt
        const live = livenessAt(age, entry.peer.manualAway, timers)
        if (live === "expired") {
          entries.delete(key)
          countAt(entry.peer.address, -1)
          emit({ _tag: "Expired", peer: entry.peer })
          continue
        }
        if (live !== entry.peer.status) {
          entry.peer = { ...entry.peer, status: live }
          emit({ _tag: "StatusChanged", peer: entry.peer })
        }
        const due = nextTransitionAge(age, entry.peer.manualAway, timers)
        if (due !== undefined) next = Math.min(next ?? Infinity, entry.seenAt + due)
      }
      return next
    }

    // One fiber keeps statuses current. It sleeps until the next transition, but never
    // longer than the away timer, so a peer heard meanwhile is seen in time; and never
    // less than 20 ms, so that many peers with nearby deadlines cost few sweeps.
    const sweeper = Effect.gen(function*() {
      for (;;) {
        const now = yield* monotonicMillis
        const next = sweep(now)
        const wait = Math.min(next === undefined ? Infinity : next - now, timers.awayAfterMs)
        yield* Effect.sleep(Duration.millis(Math.max(wait, Math.min(20, timers.awayAfterMs))))
      }
    })
    yield* Effect.forkScoped(sweeper)

    const heard = (a: Announcement, address: string, udpPort: number) =>
      Effect.gen(function*() {
        const now = yield* monotonicMillis
        const wall = new Date(yield* Clock.currentTimeMillis)
        const key = usernameKey(a.username)
        const proto: Proto = isP2pchat(a.proto) ? "p2pchat/1" : "classic"
        const manualAway = a.status === "away"
        const existing = entries.get(key)
        if (existing !== undefined && now - existing.seenAt > timers.expireAfterMs) {
          // Expired while the sweeper slept: it is a newcomer again.
          entries.delete(key)
          countAt(existing.peer.address, -1)
          emit({ _tag: "Expired", peer: existing.peer })
        }
        const entry = entries.get(key)
        const fields = {
          username: a.username,
          key,
          address,
          port: a.port ?? 6001,
          udpPort,
          proto,
          id: a.id,
          manualAway,
          lastSeen: wall,
          status: livenessAt(0, manualAway, timers) as Peer["status"]
        }
        if (entry === undefined) {
          if (entries.size >= config.maxPeers) {
            rejectedFull++
            return "full" as const
          }
          if ((namesAt.get(address) ?? 0) >= config.maxPeersPerAddress) {
            rejectedAddressFull++
            return "address-full" as const
          }
          const peer: Peer = { ...fields, firstSeen: wall, conflict: undefined }
          entries.set(key, { peer, seenAt: now })
          countAt(address, 1)
          emit({ _tag: "Appeared", peer })
          return "new" as const
        }
        const before = entry.peer
        if (identityOf(before.id) !== identityOf(a.id)) {
          // Same name, another identity: keep the one we know, tell the user once.
          const other = identityOf(a.id)
          conflicts++
          // The entry remembers the last other identity it reported, so this state goes with it.
          if (before.conflict !== other) {
            entry.peer = { ...before, conflict: other }
            emit({ _tag: "Conflict", peer: entry.peer, otherId: other, otherAddress: address })
          }
          return "conflict" as const
        }
        entry.seenAt = now
        entry.peer = { ...before, ...fields }
        if (before.address !== address) {
          countAt(before.address, -1)
          countAt(address, 1)
        }
        if (before.address !== address || before.port !== entry.peer.port) {
          emit({ _tag: "Moved", peer: entry.peer, from: `${before.address}:${before.port}` })
        }
        if (before.status !== entry.peer.status) emit({ _tag: "StatusChanged", peer: entry.peer })
        else emit({ _tag: "Heard", peer: entry.peer })
        return "known" as const
      })

    const bye = (b: Bye, address: string) =>
      Effect.sync(() => {
        const key = usernameKey(b.bye)
        const entry = entries.get(key)
        // Only from the peer's own address, with the identity we know: the id is public (every
        // announcement carries it), so without the address any host could remove any peer.
        if (entry === undefined || entry.peer.address !== address || identityOf(entry.peer.id) !== identityOf(b.id)) {
          return false
        }
        entries.delete(key)
        countAt(entry.peer.address, -1)
        emit({ _tag: "Left", peer: entry.peer })
        return true
      })

    const current = Effect.gen(function*() {
      sweep(yield* monotonicMillis)
      return entries
    })

    return {
      heard,
      bye,
      list: Effect.map(current, (m) => [...m.values()].map((e) => e.peer).sort((x, y) => x.key.localeCompare(y.key))),
      lookup: (username) => Effect.map(current, (m) => Option.fromNullishOr(m.get(usernameKey(username))?.peer)),
      lookupByAddress: (address) =>
        Effect.map(current, (m) => {
          for (const e of m.values()) if (e.peer.address === address) return Option.some(e.peer)
          return Option.none()
        }),
      stats: Effect.sync(() => ({ peers: entries.size, rejectedFull, rejectedAddressFull, conflicts })),
      changes: Effect.map(PubSub.subscribe(hub), Stream.fromSubscription)
    }
  })
)

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
export const registryEventsLayer: Layer.Layer<never, never, PeerRegistry | Events> = Layer.effectDiscard(
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
