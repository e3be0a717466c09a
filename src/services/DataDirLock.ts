/**
 * The data dir's locks: one process at a time runs each part of a node on a data dir, so
 * that two `start` on one data dir cannot run side by side (the one that quits would tell
 * the peers, by its bye, that the user left while the other still runs, and both would save
 * the peers and the counters).
 *
 * A part is a lock file in the data dir, made with O_CREAT|O_EXCL (Node has no OS file
 * lock) and holding who made it: pid, host, when, the role, and on Linux the process's
 * start time (/proc/PID/stat), so that a pid the system gave again to another process is
 * not taken for the holder. A lock whose holder no longer runs (killed with SIGKILL: no
 * finalizer ran) is taken over; two processes taking over the same stale lock at once are
 * kept apart by a second exclusive file, and the stale lock is removed only while it is
 * still the one that was judged stale, so exactly one of them wins.
 *
 * The parts, and the roles that take them (the original's scripts ran side by side on one
 * host, so its roles may share a data dir; `start` is all of them):
 *
 * | part | taken by | why one at a time |
 * |---|---|---|
 * | `announce` | `start`, `announce` | the identity's announcements and its bye |
 * | `discover` | `start`, `discover` | the peers saved in the data dir |
 * | `respond` | `start`, `respond` | the counters saved for `p2pchat stats` |
 *
 * `chat`, `send`, `trust`, `peers`, `history`, `whoami` and `stats` take none: they run
 * beside the node (SQLite keeps their writes apart).
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Config } from "./Config.ts"
import { errorCode, errorMessage } from "./StoreError.ts"
import { O_NOFOLLOW } from "./Files.ts"
import { secureDataDir } from "./StoreOpen.ts"

export class DataDirLockError extends Data.TaggedError("DataDirLockError")<{ readonly message: string }> {}

/** The roles that lock the data dir. */
export type LockRole = "start" | "announce" | "discover" | "respond"
export type LockPart = "announce" | "discover" | "respond"

export const PARTS: Readonly<Record<LockRole, ReadonlyArray<LockPart>>> = {
  start: ["announce", "discover", "respond"],
  announce: ["announce"],
  discover: ["discover"],
  respond: ["respond"]
}

export const lockFileName = (part: LockPart): string => `${part}.lock`

export class DataDirLock extends Context.Service<DataDirLock, {
  readonly dir: string
  readonly role: LockRole
  /** The lock files this process holds. */
  readonly files: ReadonlyArray<string>
}>()("p2pchat/DataDirLock") {}

/** What a lock file says about its holder. */
export interface Holder {
  readonly pid: number
  readonly host: string
  readonly role: string
  /** When it took the lock (ISO 8601). */
  readonly started: string
  /** Linux: field 22 of /proc/PID/stat (start time in clock ticks since boot), to tell a reused pid. */
  readonly procStart?: string | undefined
}

/** State and start time of a process, from /proc (Linux); undefined where there is none. */
const procStat = (pid: number | "self"): { readonly state: string; readonly start: string } | undefined => {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split after the last ')'
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
    return fields[19] === undefined ? undefined : { state: fields[0]!, start: fields[19] }
  } catch {
    return undefined
  }
}

const ownProcStart = procStat("self")?.start

/** The lock files this process holds, and their text: removed at exit if a finalizer did not run. */
const heldHere = new Map<string, string>()
let exitHook = false
const removeHeldAtExit = () => {
  for (const [file, text] of heldHere) releaseFile(file, text)
}

/** Removes a lock file if it is still ours. */
const releaseFile = (file: string, text: string): void => {
  heldHere.delete(file)
  try {
    if (fs.readFileSync(file, "utf8") === text) fs.unlinkSync(file)
  } catch {
    // gone already, or unreadable: nothing of ours to remove
  }
}

export const parseHolder = (text: string): Holder | undefined => {
  try {
    const h = JSON.parse(text) as Partial<Holder>
    if (typeof h !== "object" || h === null) return undefined
    if (!Number.isSafeInteger(h.pid) || h.pid! <= 0 || typeof h.host !== "string" || typeof h.started !== "string") return undefined
    return {
      pid: h.pid!,
      host: h.host,
      role: typeof h.role === "string" ? h.role : "?",
      started: h.started,
      procStart: typeof h.procStart === "string" ? h.procStart : undefined
    }
  } catch {
    return undefined
  }
}

/**
 * Whether the holder still runs: "elsewhere" when it is on another host (a data dir on a
 * shared disk), where its pid cannot be checked, so the lock is kept.
 */
export const holderState = (h: Holder, file: string): "running" | "gone" | "elsewhere" => {
  if (h.host !== os.hostname()) return "elsewhere"
  if (h.pid === process.pid) return heldHere.has(file) ? "running" : "gone"
  try {
    process.kill(h.pid, 0)
  } catch (e) {
    // EPERM: it runs, as another user
    if (errorCode(e) === "ESRCH") return "gone"
  }
  const stat = procStat(h.pid)
  if (stat === undefined) return "running"
  if (stat.state === "Z" || stat.state === "X") return "gone"
  return h.procStart !== undefined && h.procStart !== stat.start ? "gone" : "running"
}

/** Creates `file` with `text` if it does not exist; false when it does. */
const createExclusive = (file: string, text: string): boolean => {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | O_NOFOLLOW, 0o600)
  } catch (e) {
    if (errorCode(e) === "EEXIST") return false
    throw e
  }
  try {
    fs.writeSync(fd, text)
  } catch (e) {
    fs.closeSync(fd)
    fs.rmSync(file, { force: true })
    throw e
  }
  fs.closeSync(fd)
  return true
}

const readLock = (file: string): { readonly text: string; readonly ageMs: number } | undefined => {
  try {
    const stat = fs.lstatSync(file)
    return { text: stat.isFile() ? fs.readFileSync(file, "utf8") : "", ageMs: Date.now() - stat.mtimeMs }
  } catch (e) {
    if (errorCode(e) === "ENOENT") return undefined
    throw e
  }
}

/** A lock file still unreadable after this long was left half made: it is stale. */
const HALF_MADE_MS = 2000
/** A takeover guard older than this was left by a process killed in the middle of a takeover. */
const GUARD_STALE_MS = 10_000

/**
 * Removes the stale lock whose text was `stale`, unless another process is taking it over at
 * the same time (then the caller tries again) or it changed meanwhile.
 */
const takeOver = (file: string, stale: string, ours: string): void => {
  const guard = `${file}.takeover`
  if (!createExclusive(guard, ours)) {
    const left = readLock(guard)
    if (left !== undefined && left.ageMs > GUARD_STALE_MS) fs.rmSync(guard, { force: true })
    return
  }
  try {
    if (readLock(file)?.text === stale) fs.unlinkSync(file)
  } finally {
    fs.rmSync(guard, { force: true })
  }
}

type Step =
  | { readonly _tag: "Taken" }
  | { readonly _tag: "Held"; readonly holder: Holder; readonly elsewhere: boolean }
  | { readonly _tag: "Again"; readonly stale?: Holder | undefined }

/** One attempt at taking the lock file. */
const attempt = (file: string, ours: string): Step => {
  if (createExclusive(file, ours)) {
    // at once, in the same step: another fiber of this process checks this map (holderState)
    heldHere.set(file, ours)
    return { _tag: "Taken" }
  }
  const found = readLock(file)
  if (found === undefined) return { _tag: "Again" } // released meanwhile
  const holder = parseHolder(found.text)
  if (holder === undefined) {
    // being written by a process that just made it, or left half made long ago
    if (found.ageMs < HALF_MADE_MS) return { _tag: "Again" }
    takeOver(file, found.text, ours)
    return { _tag: "Again" }
  }
  const state = holderState(holder, file)
  if (state !== "gone") return { _tag: "Held", holder, elsewhere: state === "elsewhere" }
  takeOver(file, found.text, ours)
  return { _tag: "Again", stale: holder }
}

const when = (iso: string) => iso.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC")

/** The refusal: who holds the data dir, and what to do. */
export const inUse = (dir: string, file: string, holder: Holder, elsewhere: boolean): string => {
  const who = elsewhere ? `pid ${holder.pid} on host ${holder.host}` : `pid ${holder.pid}`
  const stale = elsewhere ? ` (if it no longer runs there, remove ${file})` : ""
  return `the data dir ${dir} is in use by p2pchat (${who}, started at ${when(holder.started)}, running ` +
    `\`p2pchat ${holder.role}\`); stop it first${stale}, or use another --data-dir`
}

const fsFailure = (dir: string, e: unknown) =>
  new DataDirLockError({
    message: `cannot lock the data dir ${dir} (${errorCode(e) || errorMessage(e)}); check that it is a writable ` +
      `directory, or choose another --data-dir`
  })

/** Takes one part's lock file, taking over a stale one; fails when a running process holds it. */
const acquirePart = (dir: string, part: LockPart, ours: string) =>
  Effect.gen(function*() {
    const file = path.join(dir, lockFileName(part))
    for (let tries = 0; tries < 200; tries++) {
      const step = yield* Effect.try({ try: () => attempt(file, ours), catch: (e) => fsFailure(dir, e) })
      if (step._tag === "Taken") {
        if (!exitHook) process.once("exit", removeHeldAtExit)
        exitHook = true
        return file
      }
      if (step._tag === "Held") return yield* new DataDirLockError({ message: inUse(dir, file, step.holder, step.elsewhere) })
      if (step.stale !== undefined) {
        const h = step.stale
        yield* Effect.logInfo(`data dir ${dir}: took over ${lockFileName(part)} of p2pchat ${h.role} (pid ${h.pid}), which no longer runs`)
      }
      yield* Effect.sleep(`${10 + Math.floor(Math.random() * 20)} millis`)
    }
    return yield* new DataDirLockError({ message: `cannot take ${file}: it keeps changing; is another p2pchat starting on ${dir}?` })
  })

/** Takes the locks of `role` on the configured data dir, for as long as the scope lasts. */
export const make = (role: LockRole): Effect.Effect<DataDirLock["Service"], DataDirLockError, Config | Scope.Scope> =>
  Effect.gen(function*() {
    const dir = path.resolve((yield* Config).dataDir)
    yield* Effect.try({ try: () => secureDataDir(dir), catch: (e) => new DataDirLockError({ message: errorMessage(e) }) })
    const ours = JSON.stringify({
      pid: process.pid,
      host: os.hostname(),
      role,
      started: new Date().toISOString(),
      ...(ownProcStart !== undefined ? { procStart: ownProcStart } : {})
    }) + "\n"
    const files: Array<string> = []
    for (const part of PARTS[role]) {
      files.push(yield* Effect.acquireRelease(acquirePart(dir, part, ours), (file) => Effect.sync(() => releaseFile(file, ours))))
    }
    return { dir, role, files }
  })

export const layer = (role: LockRole): Layer.Layer<DataDirLock, DataDirLockError, Config> => Layer.effect(DataDirLock, make(role))
