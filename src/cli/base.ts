/**
 * What every command of the command line shares (main.ts assembles them): the options,
 * accepted anywhere on the line, before or after the command (`Command.withSharedFlags` on
 * the root: a command reads them with `yield* base`); the configuration they resolve to
 * (flag > env > profile > default); the username, asked for and remembered; the lazily
 * loaded machinery; and printing.
 *
 * Start-up time: this module, like main.ts, imports only what parsing and `--help` need, by
 * deep path; everything else is loaded by the first command that needs it (`modules`).
 */
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Config from "../services/Config.ts"
import { type NodeConfig, type RawOptions, UsageError } from "../services/Config.ts"
import * as Profile from "../services/Profile.ts"
import { clean } from "../ui/render.ts"

export const VERSION = "0.1.0"

/**
 * The modules behind the commands (layers, services, the console, SQLite), each loaded by
 * the first command that needs it: `--help`, `--version` and usage errors load none of them.
 * The build splits every dynamic import into chunks of its own (package.json `build`).
 */
const load = <A>(module: () => Promise<A>): Effect.Effect<A> => Effect.promise(module)
export const modules = {
  roles: load(() => import("../layers/Node.ts")),
  console: load(() => import("../ui/Console.ts")),
  crypto: load(() => import("../services/Crypto.ts")),
  discovery: load(() => import("../services/Discovery.ts")),
  events: load(() => import("../services/Events.ts")),
  groups: load(() => import("../chat/Groups.ts")),
  history: load(() => import("../services/History.ts")),
  initiator: load(() => import("../chat/Initiator.ts")),
  presence: load(() => import("../services/PresenceSocket.ts")),
  read: load(() => import("../services/StoreRead.ts")),
  registry: load(() => import("../services/PeerRegistry.ts")),
  snapshot: load(() => import("../services/PeerSnapshot.ts")),
  stats: load(() => import("../chat/StatsSnapshot.ts")),
  store: load(() => import("../services/Store.ts")),
  transfers: load(() => import("../transfer/Transfers.ts")),
  trust: load(() => import("../trust/Trust.ts"))
}

/** The options every command accepts, anywhere on the line (cli.md "Options"). */
export const options = {
  name: Flag.String("name").pipe(Flag.withDescription("your username (env P2PCHAT_NAME); remembered; asked when missing"), Flag.optional),
  dataDir: Flag.String("data-dir").pipe(Flag.withDescription("where history, keys and your profile live (env P2PCHAT_DATA_DIR)"), Flag.optional),
  udpPort: Flag.String("udp-port").pipe(Flag.withDescription("presence port, default 6000 (env P2PCHAT_UDP_PORT)"), Flag.optional),
  tcpPort: Flag.String("tcp-port").pipe(Flag.withDescription("chat port, default 6001 (env P2PCHAT_TCP_PORT)"), Flag.optional),
  bind: Flag.String("bind").pipe(Flag.withDescription("IPv4 address to listen on, default all (env P2PCHAT_BIND)"), Flag.optional),
  target: Flag.String("target").pipe(
    Flag.withDescription("HOST[:PORT] to announce to as well, repeatable (env P2PCHAT_TARGETS, comma list)"),
    Flag.atLeast(0)
  ),
  announceEvery: Flag.String("announce-every").pipe(Flag.withDescription("announcement interval, default 8s"), Flag.optional),
  awayAfter: Flag.String("away-after").pipe(Flag.withDescription("a silent peer is away after, default 10s"), Flag.optional),
  expireAfter: Flag.String("expire-after").pipe(Flag.withDescription("a silent peer is removed after, default 15m"), Flag.optional),
  json: Flag.Boolean("json").pipe(Flag.withDescription("machine-readable output: JSON (lines)"), Flag.withDefault(false)),
  logLevel: Flag.String("log-level").pipe(Flag.withDescription("debug, info, warning, error or none (env P2PCHAT_LOG_LEVEL)"), Flag.optional),
  maxPeers: Flag.String("max-peers").pipe(Flag.withDescription("peers the registry keeps at most, default 10000"), Flag.optional),
  maxConnections: Flag.String("max-connections").pipe(Flag.withDescription("chat connections open at once, default 1024"), Flag.optional),
  firstFrameTimeout: Flag.String("first-frame-timeout").pipe(
    Flag.withDescription("a connection must complete a frame or handshake within, default 10s"),
    Flag.optional
  ),
  idleTimeout: Flag.String("idle-timeout").pipe(Flag.withDescription("an idle secure chat session is closed after, default 5m"), Flag.optional),
  maxConnectionsPerAddress: Flag.String("max-connections-per-address").pipe(
    Flag.withDescription("chat connections open at once from one address, default 64"),
    Flag.optional
  ),
  idleTimeoutPlain: Flag.String("idle-timeout-plain").pipe(
    Flag.withDescription("an idle chat session that is not secure is closed after, default 30s"),
    Flag.optional
  ),
  downloads: Flag.String("downloads").pipe(
    Flag.withDescription("where received files go, default DATA_DIR/downloads"),
    Flag.optional
  ),
  acceptFilesFrom: Flag.String("accept-files-from").pipe(
    Flag.withDescription("USER,...: take their offers without asking (once you verified their keys with trust)"),
    Flag.optional
  ),
  maxFileSize: Flag.String("max-file-size").pipe(
    Flag.withDescription("the largest offer taken, default 8GiB (500M, 2G, 8GiB, bytes)"),
    Flag.optional
  )
}

/** The root command before its handler and commands: it owns the options (main.ts completes it). */
export const base = Command.make("p2pchat").pipe(Command.withSharedFlags(options))

export type Shared = {
  readonly [K in keyof typeof options]: (typeof options)[K] extends Flag.Flag<infer A> ? A : never
}

const toRaw = (p: Shared): RawOptions => ({
  name: Option.getOrUndefined(p.name),
  dataDir: Option.getOrUndefined(p.dataDir),
  udpPort: Option.getOrUndefined(p.udpPort),
  tcpPort: Option.getOrUndefined(p.tcpPort),
  bind: Option.getOrUndefined(p.bind),
  targets: p.target,
  announceEvery: Option.getOrUndefined(p.announceEvery),
  awayAfter: Option.getOrUndefined(p.awayAfter),
  expireAfter: Option.getOrUndefined(p.expireAfter),
  maxPeers: Option.getOrUndefined(p.maxPeers),
  maxConnections: Option.getOrUndefined(p.maxConnections),
  firstFrameTimeout: Option.getOrUndefined(p.firstFrameTimeout),
  idleTimeout: Option.getOrUndefined(p.idleTimeout),
  maxConnectionsPerAddress: Option.getOrUndefined(p.maxConnectionsPerAddress),
  idleTimeoutPlain: Option.getOrUndefined(p.idleTimeoutPlain),
  downloads: Option.getOrUndefined(p.downloads),
  acceptFilesFrom: Option.getOrUndefined(p.acceptFilesFrom)?.split(",").map((n) => n.trim()).filter((n) => n !== ""),
  maxFileSize: Option.getOrUndefined(p.maxFileSize),
  json: p.json,
  logLevel: Option.getOrUndefined(p.logLevel)
})

/** A failure the user can act on; its message is printed and the exit code is 1. */
export interface Failure {
  readonly message: string
}

/**
 * Whether a process holds the data dir's lock of `role` now: `discover` for a node that
 * listens for presence (`start` or `discover`), `respond` for one that serves the chat port.
 */
export const lockHeld = (dataDir: string, role: "discover" | "respond") =>
  Effect.gen(function*() {
    const fs = yield* Effect.promise(() => import("node:fs"))
    const path = yield* Effect.promise(() => import("node:path"))
    const { holderState, lockFileName, parseHolder } = yield* load(() => import("../services/DataDirLock.ts"))
    const file = path.join(dataDir, lockFileName(role))
    const text = yield* Effect.try(() => fs.readFileSync(file, "utf8")).pipe(Effect.orElseSucceed(() => undefined))
    const holder = text === undefined ? undefined : parseHolder(text)
    return holder !== undefined && holderState(holder, file) !== "gone"
  })

export const fail = (message: string): Effect.Effect<never, Failure> => Effect.fail({ message })

/** The configuration of this run: the options, the environment, the profile of the data dir, the defaults. */
export const resolve = (p: Shared): Effect.Effect<NodeConfig, UsageError | Profile.ProfileError> =>
  Effect.gen(function*() {
    const raw = toRaw(p)
    const profile = yield* Profile.read(Config.resolveDataDir(raw))
    return yield* Config.make(raw, process.env, Profile.values(profile))
  })

/**
 * Only the data dir of this run: for `config`, which must work even when the profile holds
 * a value the other commands refuse (to fix it).
 */
export const dataDirOf = (p: Shared): string => Config.resolveDataDir(toRaw(p))

/** The user left at the question (Ctrl-D): the program ends quietly, exit 0. */
export class Left extends Data.TaggedError("Left")<{}> {}

/**
 * The original asked for the username; so do we, on a terminal, when none was given or
 * remembered (src/ui/askName.ts: Ctrl-C stops the program, exit 130; Ctrl-D leaves, exit 0).
 */
export const withName = (config: NodeConfig): Effect.Effect<NodeConfig, UsageError | Left> =>
  Effect.gen(function*() {
    if (config.name !== undefined) return config
    if (!process.stdin.isTTY) {
      return yield* new UsageError({
        message: "no username: pass --name NAME (remembered), set P2PCHAT_NAME, or run `p2pchat config set name NAME`"
      })
    }
    const { askName } = yield* Effect.promise(() => import("../ui/askName.ts"))
    const name = yield* askName
    if (Option.isNone(name)) return yield* new Left()
    return { ...config, name: name.value }
  })

/**
 * Remembers the username of this run in the profile when it holds none yet (the first
 * `start`, a `--name`, a name typed at the prompt). A name in the profile stays: `--name`
 * overrides it for one run, `p2pchat config set name` changes it. Only the commands that
 * write to the data dir call this; the read-only ones never write.
 */
export const remember = (config: NodeConfig): Effect.Effect<void, Profile.ProfileError> =>
  Effect.gen(function*() {
    const name = config.name
    if (name === undefined) return
    const stored = yield* Profile.read(config.dataDir)
    if (stored.name !== undefined) return
    yield* Profile.update(config.dataDir, (p) => p.name !== undefined ? p : { ...p, name })
  })

/** resolve, then the name (asked when missing), remembered: for the commands that act as the user. */
export const resolveNamed = (p: Shared) =>
  Effect.gen(function*() {
    const config = yield* resolve(p).pipe(Effect.flatMap(withName))
    yield* remember(config)
    return config
  })

/** Every line the CLI prints on stdout, sanitised for the terminal (`clean`: peers' names and texts). */
export const printLine = (line: string) => Effect.sync(() => void process.stdout.write(`${clean(line)}\n`))

/** A warning of a command, on stderr. */
export const printWarning = (line: string) => Effect.sync(() => void process.stderr.write(`p2pchat: warning: ${clean(line)}\n`))

/**
 * The command a usage error belongs to, so that its message points at that command's help.
 * Wraps each handler (main.ts), so an error raised deep inside still knows its command.
 */
export const inCommand = (command: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapError(effect, (e) =>
    e instanceof UsageError && e.command === undefined ? (new UsageError({ message: e.message, command }) as E) : e)
