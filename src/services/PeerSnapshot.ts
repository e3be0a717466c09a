/**
 * The registry as other processes see it: the live registry is saved in the `peers`
 * table of the node's database (as the original saved discovered.json), so that
 * `p2pchat peers`, `chat` and `send` in another process know who is there.
 */
import { Effect, Layer, Schedule } from "effect"
import { fingerprintOfId } from "../domain/Fingerprint.ts"
import { livenessAt, type Peer, type PeerStatus, type Proto, type Timers } from "../domain/Peer.ts"
import { PeerRegistry } from "./PeerRegistry.ts"
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
}

/**
 * Peers as saved by the node that owns the data dir. The saved status is aged by the
 * wall clock, so a snapshot left by a node that is no longer running does not show
 * peers online forever.
 */
export const readSnapshot = (store: Store["Service"], timers: Timers, now: Date): ReadonlyArray<Peer> => {
  const rows = store.db.prepare("SELECT * FROM peers ORDER BY username").all() as Array<Row>
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
      conflict: r.conflict ?? undefined
    })
  }
  return peers
}

/** Keeps the `peers` table equal to the live registry. */
export const peerSnapshotLayer: Layer.Layer<never, never, PeerRegistry | Store> = Layer.effectDiscard(
  Effect.gen(function*() {
    const registry = yield* PeerRegistry
    const { db } = yield* Store
    const upsert = db.prepare(
      `INSERT INTO peers (username, display, address, port, proto, id, status, last_seen, first_seen, conflict)
       VALUES (@key, @username, @address, @port, @proto, @id, @status, @lastSeen, @firstSeen, @conflict)
       ON CONFLICT (username) DO UPDATE SET display = excluded.display, address = excluded.address,
         port = excluded.port, proto = excluded.proto, id = excluded.id, status = excluded.status,
         last_seen = excluded.last_seen, conflict = excluded.conflict`
    )
    const remove = db.prepare("DELETE FROM peers WHERE username = ?")
    // What was last written, per peer, so a flush writes only what changed.
    const written = new Map<string, Peer>()
    const flush = Effect.gen(function*() {
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
          for (const p of changed) {
            upsert.run({
              key: p.key,
              username: p.username,
              address: p.address,
              port: p.port,
              proto: p.proto,
              id: p.id ?? null,
              status: p.status,
              lastSeen: p.lastSeen.toISOString(),
              firstSeen: p.firstSeen.toISOString(),
              conflict: p.conflict ?? null
            })
          }
          for (const k of gone) remove.run(k)
        })()
      ).pipe(
        Effect.tap(() =>
          Effect.sync(() => {
            for (const p of changed) written.set(p.key, p)
            for (const k of gone) written.delete(k)
          })
        ),
        Effect.catch((e) => Effect.logWarning(`registry: could not save peers: ${String(e.cause ?? e)}`))
      )
    })
    // This node's registry is now the authority: forget what an earlier run saved.
    yield* Effect.try(() => db.prepare("DELETE FROM peers").run()).pipe(Effect.ignore)
    // A quarter of a second behind the registry at most; only changed rows are written.
    yield* Effect.forkScoped(flush.pipe(Effect.repeat(Schedule.spaced("250 millis"))))
    yield* Effect.addFinalizer(() => flush)
  })
)
