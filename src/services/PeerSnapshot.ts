/**
 * The registry as other processes see it: the live registry is saved in the `peers`
 * table of the node's database (as the original saved discovered.json), so that
 * `p2pchat peers`, `chat` and `send` in another process know who is there.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { looksAlike } from "../domain/Confusables.ts"
import { fingerprintOfId } from "../domain/Fingerprint.ts"
import { livenessAt, type Peer, type PeerStatus, type Proto, type Timers } from "../domain/Peer.ts"
import { usernameKey } from "../domain/Presence.ts"
import { Config } from "./Config.ts"
import { PeerRegistry, type RegistryChange } from "./PeerRegistry.ts"
import { Store } from "./Store.ts"

/** One row of `peers --json` (CLI.md). */
export interface PeerView {
  readonly username: string
  readonly address: string
  readonly port: number
  readonly status: PeerStatus
  readonly lastSeen: string
  readonly proto: Proto
  readonly fingerprint: string | null
  /** Whether its presence is signed by the key it announces (an unsigned claim proves nothing). */
  readonly signed: boolean
  readonly conflict?: string
}

export const peerView = (p: Peer): PeerView => ({
  username: p.username,
  address: p.address,
  port: p.port,
  status: p.status,
  lastSeen: p.lastSeen.toISOString(),
  proto: p.proto,
  fingerprint: fingerprintOfId(p.id),
  signed: p.signed,
  ...(p.conflict !== undefined ? { conflict: p.conflict } : {})
})

interface Row {
  username: string
  display: string
  address: string
  port: number
  proto: string
  id: string | null
  status: string
  last_seen: string
  first_seen: string
  conflict: string | null
  signed: number
}

/**
 * Peers as saved by the node that owns the data dir. The saved status is aged by the
 * wall clock, so a snapshot left by a node that is no longer running does not show
 * peers online forever.
 */
export const readSnapshot = (store: Store["Service"], timers: Timers, now: Date): ReadonlyArray<Peer> => {
  const rows = store.db.prepare<[], Row>("SELECT * FROM peers ORDER BY username").all()
  const peers: Array<Peer> = []
  for (const r of rows) {
    const age = now.getTime() - Date.parse(r.last_seen)
    const aged = livenessAt(Math.max(0, age), r.status === "away", timers)
    if (aged === "expired") continue
    peers.push({
      username: r.display,
      key: r.username,
      address: r.address,
      port: r.port,
      udpPort: 0,
      proto: r.proto === "p2pchat/1" ? "p2pchat/1" : "classic",
      id: r.id ?? undefined,
      status: aged,
      manualAway: false,
      firstSeen: new Date(r.first_seen),
      lastSeen: new Date(r.last_seen),
      conflict: r.conflict ?? undefined,
      signed: r.signed === 1
    })
  }
  return peers
}

const UPSERT_PEER = `INSERT INTO peers (username, display, address, port, proto, id, status, last_seen, first_seen, conflict, signed)
       VALUES (@key, @username, @address, @port, @proto, @id, @status, @lastSeen, @firstSeen, @conflict, @signed)
       ON CONFLICT (username) DO UPDATE SET display = excluded.display, address = excluded.address,
         port = excluded.port, proto = excluded.proto, id = excluded.id, status = excluded.status,
         last_seen = excluded.last_seen, conflict = excluded.conflict, signed = excluded.signed`

/** The parameters of UPSERT_PEER for one peer. */
const peerRow = (p: Peer) => ({
  key: p.key,
  username: p.username,
  address: p.address,
  port: p.port,
  proto: p.proto,
  id: p.id ?? null,
  status: p.status,
  lastSeen: p.lastSeen.toISOString(),
  firstSeen: p.firstSeen.toISOString(),
  conflict: p.conflict ?? null,
  signed: p.signed ? 1 : 0
})

/**
 * An effect that writes to the `peers` table what changed in the registry since it last
 * ran. A failure (a full disk) is logged when saving starts failing and when it works again.
 */
const makeFlush = (db: Store["Service"]["db"], registry: PeerRegistry["Service"]): Effect.Effect<void> => {
  const upsert = db.prepare(UPSERT_PEER)
  const remove = db.prepare<[string]>("DELETE FROM peers WHERE username = ?")
  // What was last written, per peer, so a flush writes only what changed.
  const written = new Map<string, Peer>()
  let failures = 0
  return Effect.gen(function*() {
    const peers = yield* registry.list
    const live = new Set<string>()
    const changed: Array<Peer> = []
    for (const p of peers) {
      live.add(p.key)
      if (written.get(p.key) !== p) changed.push(p)
    }
    const gone = [...written.keys()].filter((k) => !live.has(k))
    if (changed.length === 0 && gone.length === 0) return
    yield* Effect.try(() =>
      db.transaction(() => {
        for (const p of changed) upsert.run(peerRow(p))
        for (const k of gone) remove.run([k])
      })
    ).pipe(
      Effect.tap(() =>
        Effect.sync(() => {
          for (const p of changed) written.set(p.key, p)
          for (const k of gone) written.delete(k)
        })
      ),
      Effect.tap(() => {
        if (failures === 0) return Effect.void
        const n = failures
        failures = 0
        return Effect.logInfo(`registry: peers saved again after ${n} failed attempt(s)`)
      }),
      // Logged once when saving starts failing (a full disk), not four times a second.
      Effect.catch((e) =>
        failures++ === 0 ? Effect.logWarning(`registry: could not save peers: ${String(e.cause ?? e)}`) : Effect.void
      )
    )
  })
}

/** Keeps the `peers` table equal to the live registry, for as long as its scope lasts. */
export const make: Effect.Effect<void, never, PeerRegistry | Store | Scope.Scope> = Effect.gen(function*() {
  const registry = yield* PeerRegistry
  const { db } = yield* Store
  const flush = makeFlush(db, registry)
  // This node's registry is now the authority: forget what an earlier run saved.
  yield* Effect.try(() => db.prepare("DELETE FROM peers").run()).pipe(Effect.ignore)
  // A quarter of a second behind the registry at most; only changed rows are written.
  yield* Effect.forkScoped(flush.pipe(Effect.repeat(Schedule.spaced("250 millis"))))
  yield* Effect.addFinalizer(() => flush)
})

/** Keeps the `peers` table equal to the live registry. */
export const layer: Layer.Layer<never, never, PeerRegistry | Store> = Layer.effectDiscard(make)

/** How often a snapshot registry looks at the table for its stream of changes. */
export const SNAPSHOT_POLL_MS = 1000

/** What changed between two readings of the snapshot, as the live registry would say it. */
export const snapshotChanges = (
  before: ReadonlyMap<string, Peer>,
  after: ReadonlyMap<string, Peer>
): ReadonlyArray<RegistryChange> => {
  const out: Array<RegistryChange> = []
  for (const [key, peer] of after) {
    const old = before.get(key)
    if (old === undefined) {
      out.push({ _tag: "Appeared", peer })
      continue
    }
    if (old.address !== peer.address || old.port !== peer.port || old.id !== peer.id) {
      out.push({ _tag: "Moved", peer, from: `${old.address}:${old.port}` })
    }
    if (old.status !== peer.status) out.push({ _tag: "StatusChanged", peer })
  }
  for (const [key, peer] of before) if (!after.has(key)) out.push({ _tag: "Expired", peer })
  return out
}

/**
 * A read-only PeerRegistry backed by the snapshot another process (the node that owns the
 * ports) keeps in the data dir: for `send` and `chat` run beside it. Every lookup reads the
 * table, so it is as fresh as that node's last flush; `heard` and `bye` do nothing (this
 * process hears no presence). Its changes come from polling the table once a second.
 */
export const makeRegistry: Effect.Effect<PeerRegistry["Service"], never, Store | Config> = Effect.gen(function*() {
  const store = yield* Store
  const config = yield* Config
  const timers: Timers = { awayAfterMs: config.awayAfterMs, expireAfterMs: config.expireAfterMs }
  const read = Effect.gen(function*() {
    const now = new Date(yield* Clock.currentTimeMillis)
    return yield* Effect.try(() => readSnapshot(store, timers, now)).pipe(
      Effect.catch((e) =>
        Effect.as(Effect.logWarning(`registry: cannot read the saved peers: ${String(e.cause ?? e)}`), [] as ReadonlyArray<Peer>)
      )
    )
  })
  const byKey = (peers: ReadonlyArray<Peer>) => new Map(peers.map((p) => [p.key, p] as const))
  return {
    heard: () => Effect.succeed("known" as const),
    bye: () => Effect.succeed(false),
    fresh: () => Effect.succeed(true),
    lookAlikes: (name) => Effect.map(read, (peers) => peers.filter((p) => looksAlike(name, p.username))),
    list: read,
    lookup: (username) =>
      Effect.map(read, (peers) => Option.fromNullishOr(peers.find((p) => p.key === usernameKey(username)))),
    lookupByAddress: (address) => Effect.map(read, (peers) => Option.fromNullishOr(peers.find((p) => p.address === address))),
    stats: Effect.map(read, (peers) => ({ peers: peers.length, rejectedFull: 0, rejectedAddressFull: 0, conflicts: 0 })),
    changes: Effect.map(read, (initial) => {
      let last = byKey(initial)
      return Stream.tick(`${SNAPSHOT_POLL_MS} millis`).pipe(
        Stream.mapEffect(() =>
          Effect.map(read, (peers) => {
            const now = byKey(peers)
            const changes = snapshotChanges(last, now)
            last = now
            return changes
          })
        ),
        Stream.flattenIterable
      )
    })
  }
})

/** The snapshot registry as the PeerRegistry of a process that does not own the ports. */
export const registryLayer: Layer.Layer<PeerRegistry, never, Store | Config> = Layer.effect(PeerRegistry, makeRegistry)
