/**
 * The responder's limits (see Responder.ts): connections per source address, the connection
 * cap with eviction (the oldest connection still without a first frame, else the session
 * that is not secure and has been idle longest), the first-frame deadline and the idle
 * timeouts (a secure session's, and the shorter one of a session that is not secure).
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

type LimitConfig = Pick<
  NodeConfig,
  | "maxConnections"
  | "maxConnectionsPerAddress"
  | "firstFrameTimeoutMs"
  | "idleTimeoutMs"
  | "idleTimeoutPlainMs"
  | "maxFrameBytes"
>

/** The idle timeout of a session that is not secure: never longer than a secure one's. */
export const plainIdleTimeoutMs = (c: Pick<NodeConfig, "idleTimeoutMs" | "idleTimeoutPlainMs">): number =>
  Math.min(c.idleTimeoutPlainMs, c.idleTimeoutMs)

const LIMIT_TEXT: Record<LimitName, (c: LimitConfig) => string> = {
  refusedAtCap: (c) =>
    `connection cap (${c.maxConnections} open connections, none of them idle enough to close): new connections closed at once`,
  evictedAtCap: (c) =>
    `connection cap (${c.maxConnections} open connections): the oldest connection without a first frame, or else the ` +
    `session that is not secure and idle longest (no frame for ${c.firstFrameTimeoutMs / 1000} s or more), closed to make room`,
  firstFrameTimeout: (c) => `no frame or handshake completed within ${c.firstFrameTimeoutMs / 1000} s: connection closed`,
  idleTimeout: (c) =>
    `no frame for ${plainIdleTimeoutMs(c) / 1000} s (a session that is not secure) or ${c.idleTimeoutMs / 1000} s ` +
    `(a secure one): idle session closed`,
  frameTooLarge: (c) => `frame larger than ${c.maxFrameBytes} bytes: connection closed`,
  refusedPerAddress: (c) =>
    `connections from one address (${c.maxConnectionsPerAddress} open from it): further connections from it closed at once`
}

/** An open connection, as the limits track it. */
export interface Conn {
  readonly label: string
  /** Its source address (the per-address limit counts by it). */
  readonly address: string
  /** Monotonic ms by which the first frame (and a secure handshake) must be done. */
  readonly deadline: number
  /** Counted in `active` (false once evicted: its socket is gone, its fiber ends soon). */
  counted: boolean
  evicted: boolean
  /** Its session is established and secure (Noise): never evicted, the longer idle timeout. */
  secure: boolean
  /** Monotonic ms of its last completed frame (of its opening until it completes one). */
  lastFrameAt: number
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
    /** A session's next frame must come within its idle timeout: a secure one's, or the plain one. */
    beforeIdle: (conn: Conn) => <A, E, R>(self: Effect.Effect<A, E, R>) => {
      const [ms, kind] = conn.secure ? [config.idleTimeoutMs, "secure"] : [plainIdleTimeoutMs(config), "not secure"]
      return Effect.timeoutOrElse(self, {
        duration: ms,
        orElse: () => timeout("idleTimeout", conn, `no frame for ${ms / 1000} s: idle session (${kind}) closed`)
      })
    }
  }
}

/**
 * The open connections: how many, how many from each address, those still without a first
 * frame (oldest first) and the established sessions that are not secure (least recently
 * active first: a completed frame moves one to the end).
 */
const makeRoster = () => {
  const unestablished = new Set<Conn>()
  const plain = new Set<Conn>()
  const perAddress = new Map<string, number>()
  const open = { count: 0 }
  return {
    get count() {
      return open.count
    },
    from: (address: string): number => perAddress.get(address) ?? 0,
    add: (conn: Conn) => {
      open.count++
      perAddress.set(conn.address, (perAddress.get(conn.address) ?? 0) + 1)
      unestablished.add(conn)
    },
    established: (conn: Conn, secure: boolean) => {
      unestablished.delete(conn)
      conn.secure = secure
      if (!secure && conn.counted) plain.add(conn)
    },
    touched: (conn: Conn, now: number) => {
      conn.lastFrameAt = now
      if (plain.delete(conn)) plain.add(conn)
    },
    /** Forgets `conn`; true if it was still counted. */
    remove: (conn: Conn): boolean => {
      unestablished.delete(conn)
      plain.delete(conn)
      if (!conn.counted) return false
      conn.counted = false
      open.count--
      const n = (perAddress.get(conn.address) ?? 1) - 1
      if (n === 0) perAddress.delete(conn.address)
      else perAddress.set(conn.address, n)
      return true
    },
    /** Who may go to make room: the oldest without a first frame, else a plain session idle `idleMs` or more. */
    victim: (now: number, idleMs: number): { readonly conn: Conn; readonly why: string } | undefined => {
      const silent = unestablished.values().next()
      if (silent.done !== true) return { conn: silent.value, why: "no first frame" }
      const idlest = plain.values().next()
      if (idlest.done === true) return undefined
      const idle = now - idlest.value.lastFrameAt
      return idle >= idleMs ? { conn: idlest.value, why: `a session that is not secure, idle ${Math.round(idle)} ms` } : undefined
    }
  }
}

export const makeLimits = Effect.gen(function*() {
  const config = yield* Config
  const stats = yield* Stats
  const bite = makeBite(config, stats)
  const roster = makeRoster()

  const release = (conn: Conn) => Effect.suspend(() => roster.remove(conn) ? stats.add("active", -1) : Effect.void)

  /**
   * Makes room for one more connection, or says there is none. A session that is not secure
   * counts as idle once it has completed no frame for as long as a new connection is given
   * for its first one (firstFrameTimeoutMs); a secure session is never closed for a newcomer.
   */
  const makeRoom = (now: number) =>
    Effect.gen(function*() {
      if (roster.count < config.maxConnections) return true
      const victim = roster.victim(now, config.firstFrameTimeoutMs)
      if (victim === undefined) return false
      const { conn, why } = victim
      conn.evicted = true
      yield* release(conn)
      yield* conn.destroy
      yield* bite("evictedAtCap", `${conn.label}, ${why}`)
      return true
    })

  const refuse = (accepted: Accepted, limit: "refusedAtCap" | "refusedPerAddress") =>
    Effect.gen(function*() {
      yield* accepted.refuse
      yield* bite(limit, accepted.label)
      const why = limit === "refusedAtCap" ? "connection cap" : `${config.maxConnectionsPerAddress} open from its address`
      yield* Effect.logDebug(`responder: connection from ${accepted.label} closed at once: ${why}`)
    })

  /** Serves `accepted` with `serve` if its address is under its limit and there is room, counting it while it is open. */
  const admit = (accepted: Accepted, serve: (conn: Conn) => Effect.Effect<void, never, Scope.Scope>) =>
    Effect.gen(function*() {
      const now = yield* nowMs
      if (roster.from(accepted.address) >= config.maxConnectionsPerAddress) return yield* refuse(accepted, "refusedPerAddress")
      if (!(yield* makeRoom(now))) return yield* refuse(accepted, "refusedAtCap")
      const conn: Conn = {
        label: accepted.label,
        address: accepted.address,
        deadline: now + config.firstFrameTimeoutMs,
        counted: true,
        evicted: false,
        secure: false,
        lastFrameAt: now,
        destroy: accepted.destroy
      }
      roster.add(conn)
      yield* stats.add("accepted")
      yield* stats.add("active")
      yield* serve(conn).pipe(Effect.ensuring(release(conn)))
    })

  return {
    admit,
    bite,
    ...makeTimeouts(config, bite),
    /** The first frame (and a secure handshake) is done: the session is established, secure or not. */
    established: (conn: Conn, secure: boolean) => Effect.sync(() => roster.established(conn, secure)),
    /** A frame of `conn` completed (its activity, for choosing whom to close at the cap). */
    touched: (conn: Conn) => Effect.map(nowMs, (now) => roster.touched(conn, now))
  }
})
