/**
 * The node's configuration: command-line flags, then environment variables, then the
 * profile in the data dir (Profile.ts), then defaults (cli.md "Options"). A bad value is a
 * UsageError that names the option (or the profile's key) and what it accepts.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as os from "node:os"
import * as path from "node:path"
import { normalizeUsername, showUsername, usernameProblem } from "../domain/Presence.ts"

export interface Target {
  readonly host: string
  readonly port: number
}

export type LogLevel = "debug" | "info" | "warning" | "error" | "none"
const LOG_LEVELS: ReadonlyArray<LogLevel> = ["debug", "info", "warning", "error", "none"]

export interface NodeConfig {
  /** undefined until asked: commands that announce ask for it, as the original did. */
  readonly name: string | undefined
  readonly dataDir: string
  readonly udpPort: number
  readonly tcpPort: number
  /** undefined means every interface. */
  readonly bind: string | undefined
  readonly targets: ReadonlyArray<Target>
  readonly announceEveryMs: number
  readonly awayAfterMs: number
  readonly expireAfterMs: number
  readonly json: boolean
  readonly logLevel: LogLevel
  /** Registry cap, so that a flood of invented names cannot exhaust memory. */
  readonly maxPeers: number
  /** Names one source address may hold in the registry, so one host cannot push real peers out. */
  readonly maxPeersPerAddress: number
  /** Presence datagrams a second accepted from one source address (bursts of twice that). */
  readonly presenceRatePerAddress: number
  /**
   * Chat connections the responder keeps open at once. At the cap a new connection is
   * accepted and closed at once (Responder.ts says which one goes: the oldest connection
   * still without a first frame, else the session that is not secure and has been idle
   * longest, or else the newcomer).
   */
  readonly maxConnections: number
  /**
   * Chat connections open at once from one source address, so that one host cannot hold
   * the whole cap; a connection over it is closed at once.
   */
  readonly maxConnectionsPerAddress: number
  /** A connection must complete its first frame (and a secure one its handshake) this soon after it opens. */
  readonly firstFrameTimeoutMs: number
  /** A secure session that completes no frame for this long is closed. */
  readonly idleTimeoutMs: number
  /**
   * A session that is not secure (plain, classic) that completes no frame for this long is
   * closed; never longer than idleTimeoutMs (the shorter of the two applies).
   */
  readonly idleTimeoutPlainMs: number
  /** Bytes the responder buffers for one incomplete frame (at most the protocol's 64 KiB frame cap). */
  readonly maxFrameBytes: number
  /**
   * Outgoing messages kept in memory while they cannot be stored (disk full, data dir not
   * writable); beyond this a send that cannot be stored is refused.
   */
  readonly maxUnstoredMessages: number
  /** Where received files land (absolute); default `<dataDir>/downloads`. */
  readonly downloads: string
  /** The largest offer accepted, in bytes (all of a folder's files together); default 8 GiB. */
  readonly maxFileSize: number
  /** Senders whose offers are accepted at once (names; pinned peers only). */
  readonly acceptFilesFrom: ReadonlyArray<string>
}

/** The limits' defaults (issue 6, "Resource limits"); resolveConfig and testConfig use them. */
export const DEFAULT_LIMITS = {
  maxPeers: 10_000,
  maxPeersPerAddress: 64,
  presenceRatePerAddress: 20,
  maxConnections: 1024,
  maxConnectionsPerAddress: 64,
  firstFrameTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000,
  idleTimeoutPlainMs: 30_000,
  maxFrameBytes: 64 * 1024,
  maxUnstoredMessages: 1000,
  maxFileSize: 8 * 1024 ** 3
} as const

export class Config extends Context.Service<Config, NodeConfig>()("p2pchat/Config") {}

/**
 * A usage error: exit 2, one line on stderr with a pointer to the help. `command` is the
 * command whose help explains it (`send`, `config set`); main.ts fills it in.
 */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string; readonly command?: string }> {}

/**
 * The defaults a user keeps in the data dir's profile (Profile.ts), as text, the way the
 * flags give them: resolved by the same rules, after flags and environment.
 */
export interface ProfileValues {
  readonly name?: string | undefined
  readonly udpPort?: string | undefined
  readonly tcpPort?: string | undefined
  readonly targets?: ReadonlyArray<string> | undefined
  readonly bind?: string | undefined
  readonly downloads?: string | undefined
}

/** What the command line said; undefined where a flag was not given. */
export interface RawOptions {
  readonly name?: string | undefined
  readonly dataDir?: string | undefined
  readonly udpPort?: string | undefined
  readonly tcpPort?: string | undefined
  readonly bind?: string | undefined
  readonly targets?: ReadonlyArray<string> | undefined
  readonly announceEvery?: string | undefined
  readonly awayAfter?: string | undefined
  readonly expireAfter?: string | undefined
  readonly json?: boolean | undefined
  readonly logLevel?: string | undefined
  readonly maxPeers?: string | undefined
  readonly maxConnections?: string | undefined
  readonly maxConnectionsPerAddress?: string | undefined
  readonly firstFrameTimeout?: string | undefined
  readonly idleTimeout?: string | undefined
  readonly idleTimeoutPlain?: string | undefined
  readonly downloads?: string | undefined
  /** As typed: `500M`, `2G`, `8GiB`, `1048576`. */
  readonly maxFileSize?: string | undefined
  /** Names, split at commas already. */
  readonly acceptFilesFrom?: ReadonlyArray<string> | undefined
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** `500ms`, `8s`, `1.5m`, `2h` to milliseconds; undefined when it is not a duration. */
export const parseDuration = (text: string): number | undefined => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(text)
  if (m === null) return undefined
  const ms = Math.round(Number(m[1]) * UNITS[m[2]!]!)
  return ms > 0 && Number.isSafeInteger(ms) ? ms : undefined
}

export const parsePort = (option: string, text: string, allowZero = false): number => {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN
  if (!Number.isInteger(n) || n > 65535 || n < (allowZero ? 0 : 1)) {
    throw new UsageError({ message: `${option}: expected a port number from ${allowZero ? 0 : 1} to 65535, got '${text}'` })
  }
  return n
}

const SIZE_UNITS: Record<string, number> = {
  "": 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4
}

/** `1048576`, `500M`, `2G`, `8GiB`, `1.5GB` to bytes (K, M, G, T and KiB... are powers of 1024; kB, MB... of 1000). */
export const parseSize = (text: string): number | undefined => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  if (m === null) return undefined
  const unit = SIZE_UNITS[m[2]!.toLowerCase()]
  if (unit === undefined) return undefined
  const n = Math.floor(Number(m[1]) * unit)
  return n > 0 && Number.isSafeInteger(n) ? n : undefined
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/

export const parseTarget = (text: string, defaultPort: number, option = "--target"): Target => {
  const m = /^([^:]+)(?::(\d+))?$/.exec(text.trim())
  if (m === null || !(IPV4.test(m[1]!) || HOSTNAME.test(m[1]!))) {
    throw new UsageError({ message: `${option}: expected HOST or HOST:PORT (an IPv4 address or host name), got '${text}'` })
  }
  return { host: m[1]!, port: m[2] === undefined ? defaultPort : parsePort(option, m[2]) }
}

/** An IPv4 address to bind to; its being an address of this host is checked when it is bound. */
export const parseBind = (option: string, text: string): string => {
  if (!IPV4.test(text)) throw new UsageError({ message: `${option}: expected an IPv4 address of this host, got '${text}'` })
  return text
}

/** A username as the rules of protocol.md keep it (NFC), or a UsageError naming the character refused. */
export const parseName = (option: string, text: string): string => {
  const problem = usernameProblem(text)
  if (problem !== undefined) throw new UsageError({ message: `${option}: ${problem}, got "${showUsername(text)}"` })
  return normalizeUsername(text)
}

const count = (option: string, text: string | undefined, fallback: number): number => {
  if (text === undefined) return fallback
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError({ message: `${option}: expected a whole number of at least 1, got '${text}'` })
  return n
}

const duration = (option: string, text: string | undefined, fallback: number): number => {
  if (text === undefined) return fallback
  const ms = parseDuration(text)
  if (ms === undefined) {
    throw new UsageError({ message: `${option}: expected a duration like 500ms, 8s, 15m or 1h, got '${text}'` })
  }
  return ms
}

export const defaultDataDir = (env: NodeJS.ProcessEnv): string =>
  env["XDG_DATA_HOME"] ? path.join(env["XDG_DATA_HOME"], "p2pchat") : path.join(os.homedir(), ".local", "share", "p2pchat")

const nonEmpty = (s: string | undefined): string | undefined => (s === undefined || s === "" ? undefined : s)

/** The data dir of a command line and an environment: where the profile is read, before the rest is resolved. */
export const resolveDataDir = (raw: Pick<RawOptions, "dataDir">, env: NodeJS.ProcessEnv = process.env): string =>
  path.resolve(raw.dataDir ?? nonEmpty(env["P2PCHAT_DATA_DIR"]) ?? defaultDataDir(env))

/** The profile's value of `key`, labelled so that a bad one says where it came from. */
const PROFILE_LABEL = (key: string) => `${key} (in the profile; change it with \`p2pchat config set ${key}\`)`

/** Flags, then environment, then the profile, then defaults. Throws UsageError; see `resolveConfig`. */
const resolve = (raw: RawOptions, env: NodeJS.ProcessEnv, profile: ProfileValues): NodeConfig => {
  const flagOrEnv = (flag: string | undefined, envName: string) => flag ?? nonEmpty(env[envName])
  // which of flag/env/profile gave a value, so that a bad one is named as the user wrote it
  const pick = (flag: string | undefined, envName: string, option: string, key: string, fromProfile: string | undefined) => {
    const given = flagOrEnv(flag, envName)
    if (given !== undefined) return { text: given, option }
    return fromProfile === undefined ? undefined : { text: fromProfile, option: PROFILE_LABEL(key) }
  }
  const nameGiven = pick(raw.name, "P2PCHAT_NAME", "--name", "name", profile.name)
  const name = nameGiven === undefined ? undefined : parseName(nameGiven.option, nameGiven.text)
  const port = (flag: string | undefined, envName: string, option: string, key: string, fromProfile: string | undefined, fallback: number) => {
    const given = pick(flag, envName, option, key, fromProfile)
    return given === undefined ? fallback : parsePort(given.option, given.text, true)
  }
  const udpPort = port(raw.udpPort, "P2PCHAT_UDP_PORT", "--udp-port", "udp-port", profile.udpPort, 6000)
  const tcpPort = port(raw.tcpPort, "P2PCHAT_TCP_PORT", "--tcp-port", "tcp-port", profile.tcpPort, 6001)
  const bindGiven = pick(raw.bind, "P2PCHAT_BIND", "--bind", "bind", profile.bind)
  const bind = bindGiven === undefined ? undefined : parseBind(bindGiven.option, bindGiven.text)
  const targetPort = udpPort === 0 ? 6000 : udpPort
  const fromEnv = nonEmpty(env["P2PCHAT_TARGETS"])?.split(",").filter((t) => t.trim() !== "")
  const targets = raw.targets !== undefined && raw.targets.length > 0
    ? raw.targets.map((t) => parseTarget(t, targetPort))
    : fromEnv !== undefined
    ? fromEnv.map((t) => parseTarget(t, targetPort))
    : (profile.targets ?? []).map((t) => parseTarget(t, targetPort, PROFILE_LABEL("targets")))
  const announceEveryMs = duration("--announce-every", raw.announceEvery, 8_000)
  const awayAfterMs = duration("--away-after", raw.awayAfter, 10_000)
  const expireAfterMs = duration("--expire-after", raw.expireAfter, 15 * 60_000)
  if (expireAfterMs <= awayAfterMs) {
    throw new UsageError({ message: `--expire-after (${expireAfterMs} ms) must be longer than --away-after (${awayAfterMs} ms)` })
  }
  const logLevel = (raw.logLevel ?? nonEmpty(env["P2PCHAT_LOG_LEVEL"]) ?? "info").toLowerCase()
  if (!LOG_LEVELS.includes(logLevel as LogLevel)) {
    throw new UsageError({ message: `--log-level: expected one of ${LOG_LEVELS.join(", ")}, got '${logLevel}'` })
  }
  const dataDir = resolveDataDir(raw, env)
  const maxFileSize = raw.maxFileSize === undefined ? DEFAULT_LIMITS.maxFileSize : parseSize(raw.maxFileSize)
  if (maxFileSize === undefined) {
    throw new UsageError({ message: `--max-file-size: expected a size like 500M, 2G or 8GiB, got '${raw.maxFileSize}'` })
  }
  const acceptFilesFrom = (raw.acceptFilesFrom ?? []).map((n) => parseName("--accept-files-from", n))
  return {
    name,
    dataDir,
    udpPort,
    tcpPort,
    bind,
    targets,
    announceEveryMs,
    awayAfterMs,
    expireAfterMs,
    json: raw.json ?? false,
    logLevel: logLevel as LogLevel,
    ...DEFAULT_LIMITS,
    maxPeers: count("--max-peers", raw.maxPeers, DEFAULT_LIMITS.maxPeers),
    maxConnections: count("--max-connections", raw.maxConnections, DEFAULT_LIMITS.maxConnections),
    maxConnectionsPerAddress: count(
      "--max-connections-per-address",
      raw.maxConnectionsPerAddress,
      DEFAULT_LIMITS.maxConnectionsPerAddress
    ),
    firstFrameTimeoutMs: duration("--first-frame-timeout", raw.firstFrameTimeout, DEFAULT_LIMITS.firstFrameTimeoutMs),
    idleTimeoutMs: duration("--idle-timeout", raw.idleTimeout, DEFAULT_LIMITS.idleTimeoutMs),
    idleTimeoutPlainMs: duration("--idle-timeout-plain", raw.idleTimeoutPlain, DEFAULT_LIMITS.idleTimeoutPlainMs),
    downloads: path.resolve(raw.downloads ?? profile.downloads ?? path.join(dataDir, "downloads")),
    maxFileSize,
    acceptFilesFrom
  }
}

export const resolveConfig = (
  raw: RawOptions,
  env: NodeJS.ProcessEnv = process.env,
  profile: ProfileValues = {}
): NodeConfig | UsageError => {
  try {
    return resolve(raw, env, profile)
  } catch (e) {
    if (e instanceof UsageError) return e
    throw e
  }
}

/** The configuration of a command line, an environment and a profile; fails with the UsageError to show. */
export const make = (
  raw: RawOptions,
  env: NodeJS.ProcessEnv = process.env,
  profile: ProfileValues = {}
): Effect.Effect<NodeConfig, UsageError> =>
  Effect.suspend(() => {
    const config = resolveConfig(raw, env, profile)
    return config instanceof UsageError ? Effect.fail(config) : Effect.succeed(config)
  })

/** Config served from a resolved configuration (main.ts resolves it before it picks a role). */
export const layer = (config: NodeConfig): Layer.Layer<Config> => Layer.succeed(Config, config)

/** A configuration for tests and benchmarks: loopback, OS-chosen ports, short timers. */
export const testConfig = (overrides: Partial<NodeConfig> & { readonly dataDir: string }): NodeConfig => ({
  name: "tester",
  downloads: path.join(overrides.dataDir, "downloads"),
  acceptFilesFrom: [],
  udpPort: 0,
  tcpPort: 0,
  bind: "127.0.0.1",
  targets: [],
  announceEveryMs: 8_000,
  awayAfterMs: 10_000,
  expireAfterMs: 15 * 60_000,
  json: false,
  logLevel: "none",
  ...DEFAULT_LIMITS,
  ...overrides
})
