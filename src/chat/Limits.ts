/**
 * The responder's limits (see Responder.ts): the connection cap with eviction of the oldest
 * connection still without a first frame, the first-frame deadline and the idle timeout.
 * Each bite is counted in Stats every time, logged the first time and then summarised at
 * most once a minute.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { Config, type NodeConfig } from "../services/Config.ts"
import type { Accepted } from "../transport/Transport.ts"
import { ConnectionEnded } from "./ConnectionEnded.ts"
import { type LimitName, Stats } from "./Stats.ts"

/** A limit that keeps biting is summarised in the log at most this often. */
export const LIMIT_LOG_EVERY_MS = 60_000

type LimitConfig = Pick<NodeConfig, "maxConnections" | "firstFrameTimeoutMs" | "idleTimeoutMs" | "maxFrameBytes">

const LIMIT_TEXT: Record<LimitName, (c: LimitConfig) => string> = {
  refusedAtCap: (c) => `connection cap (${c.maxConnections} open connections, all sessions): new connections closed at once`,
  evictedAtCap: (c) =>
    `connection cap (${c.maxConnections} open connections): the oldest connection without a first frame closed to make room`,
  firstFrameTimeout: (c) => `no frame or handshake completed within ${c.firstFrameTimeoutMs / 1000} s: connection closed`,
  idleTimeout: (c) => `no frame for ${c.idleTimeoutMs / 1000} s: idle session closed`,
  frameTooLarge: (c) => `frame larger than ${c.maxFrameBytes} bytes: connection closed`
}

/** An open connection, as the limits track it. */
export interface Conn {
  readonly label: string
  /** Monotonic ms by which the first frame (and a secure handshake) must be done. */
  readonly deadline: number
  /** Counted in `active` (false once evicted: its socket is gone, its fiber ends soon). */
  counted: boolean
  evicted: boolean
  readonly destroy: Effect.Effect<void>
}

const nowMs = Effect.map(Clock.monotonicTimeNanos, (n) => Number(n / 1_000_000n))

/** Counts a limit's bite; logs the first one, then a summary at most once a minute. */
const makeBite = (config: LimitConfig, stats: Stats["Service"]) => {
  const lastLogged: Partial<Record<LimitName, { readonly at: number; readonly count: number }>> = {}
  return (limit: LimitName, detail: string) =>
    Effect.gen(function*() {
      const count = yield* stats.bite(limit)
      const now = yield* nowMs
      const last = lastLogged[limit]
      if (last === undefined) {
        lastLogged[limit] = { at: now, count }
        yield* Effect.logWarning(
          `responder: limit reached: ${LIMIT_TEXT[limit](config)} (${detail}); 1 time so far. ` +
            `Logged once, then summarised at most once a minute; the responder's stats count every time`
        )
      } else if (now - last.at >= LIMIT_LOG_EVERY_MS) {
        lastLogged[limit] = { at: now, count }
        yield* Effect.logWarning(
          `responder: limit reached: ${LIMIT_TEXT[limit](config)}: ${count - last.count} more time(s) in the last ` +
            `${Math.round((now - last.at) / 1000)} s, ${count} since start`
        )
      }
    })
}

/** The deadlines of a connection: its first frame (and handshake), then each frame of its session. */
const makeTimeouts = (config: LimitConfig, bite: ReturnType<typeof makeBite>) => {
  const timeout = (limit: LimitName, conn: Conn, message: string) =>
    Effect.andThen(bite(limit, conn.label), Effect.fail(new ConnectionEnded({ reason: "Timeout", message })))
  return {
    /** The first frame, and a secure handshake, must be done by the connection's deadline. */
    byDeadline: (conn: Conn, what: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
      Effect.flatMap(nowMs, (now) =>
        Effect.timeoutOrElse(self, {
          duration: Math.max(0, conn.deadline - now),
          orElse: () =>
            timeout("firstFrameTimeout", conn, `${what} not completed within ${config.firstFrameTimeoutMs / 1000} s of connecting`)
        })),
    /** A session's next frame must come within idleTimeoutMs. */
    beforeIdle: (conn: Conn) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
      Effect.timeoutOrElse(self, {
        duration: config.idleTimeoutMs,
        orElse: () => timeout("idleTimeout", conn, `no frame for ${config.idleTimeoutMs / 1000} s: idle session closed`)
      })
  }
}

export const makeLimits = Effect.gen(function*() {
  const config = yield* Config
  const stats = yield* Stats
  const bite = makeBite(config, stats)
  /** Connections still without a first frame (or handshake), oldest first. */
  const unestablished = new Set<Conn>()
  const open = { count: 0 }

  const release = (conn: Conn) =>
    Effect.suspend(() => {
      if (!conn.counted) return Effect.void
      conn.counted = false
      open.count--
      return stats.add("active", -1)
    })

  /** Makes room for one more connection, or says there is none. */
  const makeRoom = Effect.gen(function*() {
    if (open.count < config.maxConnections) return true
    const victim = unestablished.values().next()
    if (victim.done === true) return false
    const conn = victim.value
    unestablished.delete(conn)
    conn.evicted = true
    yield* release(conn)
    yield* conn.destroy
    yield* bite("evictedAtCap", conn.label)
    return true
  })

  /** Serves `accepted` with `serve` if there is room, counting it while it is open. */
  const admit = (accepted: Accepted, serve: (conn: Conn) => Effect.Effect<void, never, Scope.Scope>) =>
    Effect.gen(function*() {
      if (!(yield* makeRoom)) {
        yield* accepted.refuse
        yield* bite("refusedAtCap", accepted.label)
        return yield* Effect.logDebug(`responder: connection from ${accepted.label} closed at once: connection cap`)
      }
      const deadline = (yield* nowMs) + config.firstFrameTimeoutMs
      const conn: Conn = { label: accepted.label, deadline, counted: true, evicted: false, destroy: accepted.destroy }
      open.count++
      yield* stats.add("accepted")
      yield* stats.add("active")
      unestablished.add(conn)
      yield* serve(conn).pipe(
        Effect.ensuring(Effect.andThen(Effect.sync(() => void unestablished.delete(conn)), release(conn)))
      )
    })

  return {
    admit,
    bite,
    ...makeTimeouts(config, bite),
    established: (conn: Conn) => Effect.sync(() => void unestablished.delete(conn))
  }
})
