/**
 * The counters of the chat roles, in one place: connections, sessions, messages in and out,
 * rejections by reason, limits. Each is a Ref; `snapshot` reads them all at once.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"

/** How often each responder limit bit (see Responder.ts). */
export interface LimitStats {
  /** New connections closed at once: maxConnections were open, none of them evictable. */
  readonly refusedAtCap: number
  /**
   * Connections closed to make room for a new one: the oldest still without a first frame,
   * or else the session that is not secure and has been idle longest (Limits.ts).
   */
  readonly evictedAtCap: number
  /** Connections closed for completing no frame (or no handshake) within firstFrameTimeoutMs. */
  readonly firstFrameTimeout: number
  /** Sessions closed without a frame for idleTimeoutMs (secure) or idleTimeoutPlainMs (not secure). */
  readonly idleTimeout: number
  /** Connections ended for a frame larger than maxFrameBytes (also in rejectedByReason.FrameTooLarge). */
  readonly frameTooLarge: number
  /** New connections closed at once: their source address already had maxConnectionsPerAddress open. */
  readonly refusedPerAddress: number
}

export type LimitName = keyof LimitStats

export interface StatsSnapshot {
  /** Connections accepted since start. */
  readonly accepted: number
  /** Connections open now. */
  readonly active: number
  /** The most connections open at once since start. */
  readonly peakActive: number
  /** Secure sessions established: accepted, and opened to peers. */
  readonly sessionsIn: number
  readonly sessionsOut: number
  /** Messages stored (new ids only). */
  readonly received: number
  /** Messages whose id was already stored (a retry): acked, not shown again. */
  readonly duplicates: number
  /** Messages this node sent that were acked (delivered) or written to a classic peer (sent). */
  readonly delivered: number
  readonly sent: number
  /** Sends that failed (the message stays pending for a p2pchat peer). */
  readonly sendFailures: number
  /** Connections ended because the peer sent something wrong. */
  readonly rejected: number
  /** `rejected`, by reason (NotJson, FrameTooLarge, BadFrame, ClosedMidFrame, NoKey, ...). */
  readonly rejectedByReason: Readonly<Record<string, number>>
  /** Messages that could not be stored (not acked). */
  readonly storageFailures: number
  readonly limits: LimitStats
}

type Counter = Exclude<keyof StatsSnapshot, "rejectedByReason" | "limits">

const ZERO: StatsSnapshot = {
  accepted: 0,
  active: 0,
  peakActive: 0,
  sessionsIn: 0,
  sessionsOut: 0,
  received: 0,
  duplicates: 0,
  delivered: 0,
  sent: 0,
  sendFailures: 0,
  rejected: 0,
  rejectedByReason: {},
  storageFailures: 0,
  limits: { refusedAtCap: 0, evictedAtCap: 0, firstFrameTimeout: 0, idleTimeout: 0, frameTooLarge: 0, refusedPerAddress: 0 }
}

export class Stats extends Context.Service<Stats, {
  readonly add: (counter: Counter, n?: number) => Effect.Effect<void>
  /** A connection ended on bad input: counted in `rejected` and by reason. */
  readonly reject: (reason: string) => Effect.Effect<void>
  /** Counts a limit's bite; returns how often it bit since start. */
  readonly bite: (limit: LimitName) => Effect.Effect<number>
  readonly snapshot: Effect.Effect<StatsSnapshot>
}>()("p2pchat/Stats") {}

export const make = Effect.map(Ref.make(ZERO), (ref) =>
  Stats.of({
    add: (counter, n = 1) =>
      Ref.update(ref, (s) => {
        const next = { ...s, [counter]: s[counter] + n }
        return counter === "active" && next.active > s.peakActive ? { ...next, peakActive: next.active } : next
      }),
    reject: (reason) =>
      Ref.update(ref, (s) => ({
        ...s,
        rejected: s.rejected + 1,
        rejectedByReason: { ...s.rejectedByReason, [reason]: (s.rejectedByReason[reason] ?? 0) + 1 }
      })),
    bite: (limit) =>
      Ref.modify(ref, (s) => {
        const count = (s.limits[limit] ?? 0) + 1
        return [count, { ...s, limits: { ...s.limits, [limit]: count } }]
      }),
    snapshot: Ref.get(ref)
  }))

export const layer = Layer.effect(Stats, make)
