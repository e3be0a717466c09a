/**
 * The profile: the user's name and the defaults they chose, kept in the data dir
 * (`config.json`, mode 0600, in the private data dir), so that no command has to be told
 * them again (cli.md "Names", "The data dir"). Flags and environment variables still win
 * for the run they are given in (Config.ts: flag > env > profile > default).
 *
 * `p2pchat config` reads and changes it, with the rules of the flags: a bad value is a
 * UsageError. It is written whole to a temp file that is then renamed over it, so a crash
 * leaves the old profile or the new one, never half of one.
 *
 * This module only reads (it is on every command's path, so it stays light); writing needs
 * the data dir made private first (StoreOpen's secureDataDir), loaded when a write comes.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fsyncDir, O_NOFOLLOW } from "./Files.ts"
import { parseBind, parseName, parsePort, parseTarget, type ProfileValues, UsageError } from "./Config.ts"

export const PROFILE_FILE = "config.json"

/** The keys of `p2pchat config`, as the profile file writes them. */
export const KEYS = ["name", "udp-port", "tcp-port", "targets", "bind", "downloads"] as const
export type Key = (typeof KEYS)[number]

export interface Profile {
  readonly name?: string
  readonly "udp-port"?: number
  readonly "tcp-port"?: number
  readonly targets?: ReadonlyArray<string>
  readonly bind?: string
  /** Where received files are to go (for file transfer, to come). */
  readonly downloads?: string
}

/** A profile that cannot be read or written: exit 1, the message says what to do. */
export class ProfileError extends Data.TaggedError("ProfileError")<{ readonly message: string }> {}

export const profileFile = (dataDir: string): string => path.join(dataDir, PROFILE_FILE)

const MAX_BYTES = 64 * 1024

const refused = (file: string, problem: string, fix = "move it away (the defaults apply again)") =>
  new ProfileError({ message: `profile ${file} ${problem}; ${fix} or choose another --data-dir` })

/** The profile as stored, unchecked: undefined when there is none. Throws a ProfileError. */
const readRaw = (file: string): Record<string, unknown> | undefined => {
  let link: fs.Stats | undefined
  try {
    link = fs.lstatSync(file, { throwIfNoEntry: false })
  } catch (e) {
    // a data dir that is no directory has no profile; whatever opens it says what is wrong
    if ((e as NodeJS.ErrnoException).code === "ENOTDIR") return undefined
    throw refused(file, `cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`)
  }
  if (link === undefined) return undefined
  if (link.isSymbolicLink()) throw refused(file, "is a symbolic link (p2pchat follows no links inside its data dir)")
  if (!link.isFile()) throw refused(file, "is not a regular file")
  if (link.size > MAX_BYTES) throw refused(file, `is too large (${link.size} bytes)`)
  let text: string
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | O_NOFOLLOW)
    try {
      text = fs.readFileSync(fd, "utf8")
    } finally {
      fs.closeSync(fd)
    }
  } catch (e) {
    throw refused(file, `cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    throw refused(file, `is not valid JSON (${(e as Error).message})`, "fix it, or move it away (the defaults apply again),")
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw refused(file, "is not a JSON object")
  return value as Record<string, unknown>
}

/** The stored value of a known key, in its type; other values (hand-edited) are kept as text for Config to refuse. */
const asText = (v: unknown): string | undefined =>
  v === undefined || v === null ? undefined : typeof v === "string" ? v : typeof v === "number" ? String(v) : JSON.stringify(v)

/** Reads the profile of a data dir ({} when there is none); fails with a ProfileError. */
export const read = (dataDir: string): Effect.Effect<Profile & Record<string, unknown>, ProfileError> =>
  Effect.try({
    try: () => readRaw(profileFile(dataDir)) ?? {},
    catch: (e) => e instanceof ProfileError ? e : new ProfileError({ message: String(e) })
  })

/** What the profile gives Config (Config.resolve checks it like a flag). */
export const values = (p: Profile & Record<string, unknown>): ProfileValues => {
  const targets = p.targets as unknown
  return {
    name: asText(p.name),
    udpPort: asText(p["udp-port"]),
    tcpPort: asText(p["tcp-port"]),
    bind: asText(p.bind),
    downloads: asText(p.downloads),
    targets: Array.isArray(targets)
      ? targets.map((t) => String(t))
      : typeof targets === "string"
      ? targets.split(",").filter((t) => t.trim() !== "")
      : undefined
  }
}

export const isKey = (key: string): key is Key => (KEYS as ReadonlyArray<string>).includes(key)

/** Fails unless `key` is one of KEYS. */
export const checkKey = (key: string): Effect.Effect<Key, UsageError> =>
  isKey(key)
    ? Effect.succeed(key)
    : Effect.fail(new UsageError({ message: `unknown key '${key}'; the keys are ${KEYS.join(", ")}` }))

/** A value given to `config set KEY VALUE`, checked as the flag of that name would be, in its stored type. */
export const parseValue = (key: Key, text: string): Effect.Effect<Profile[Key], UsageError> =>
  Effect.try({
    try: (): Profile[Key] => {
      switch (key) {
        case "name":
          return parseName("name", text)
        case "udp-port":
        case "tcp-port":
          return parsePort(key, text, true)
        case "bind":
          return parseBind("bind", text)
        case "targets": {
          const list = text.split(",").map((t) => t.trim()).filter((t) => t !== "")
          if (list.length === 0) throw new UsageError({ message: `targets: expected HOST[:PORT], comma-separated, got '${text}'` })
          for (const t of list) parseTarget(t, 6000, "targets")
          return list
        }
        case "downloads": {
          if (text.trim() === "" || text.includes("\u0000")) {
            throw new UsageError({ message: `downloads: expected a folder, got '${text}'` })
          }
          const dir = path.resolve(text)
          const stat = fs.statSync(dir, { throwIfNoEntry: false })
          if (stat !== undefined && !stat.isDirectory()) {
            throw new UsageError({ message: `downloads: ${dir} exists and is not a folder` })
          }
          return dir
        }
      }
    },
    catch: (e) => e instanceof UsageError ? e : new UsageError({ message: `${key}: ${String(e)}` })
  })

/**
 * Writes the whole profile: a new file of mode 0600 under a random name (O_EXCL, never
 * through a link), fsynced, renamed over `config.json`, then the directory fsynced. The
 * data dir must have been made private first (secureDataDir).
 */
export const writeFile = (dataDir: string, profile: Record<string, unknown>): void => {
  const file = profileFile(dataDir)
  readRaw(file) // refuses a link or a non-file in its place before anything is written
  const tmp = path.join(dataDir, `.${PROFILE_FILE}.${randomBytes(12).toString("hex")}.tmp`)
  const fd = fs.openSync(tmp, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | O_NOFOLLOW, 0o600)
  try {
    try {
      fs.writeSync(fd, `${JSON.stringify(profile, null, 2)}\n`)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, file)
  } finally {
    fs.rmSync(tmp, { force: true })
  }
  fsyncDir(dataDir)
}

/**
 * Changes the profile of a data dir: `change` gets what is stored and returns the new
 * profile. Makes the data dir (private) when it is missing. Fails with a ProfileError.
 */
export const update = (
  dataDir: string,
  change: (p: Record<string, unknown>) => Record<string, unknown>
): Effect.Effect<Record<string, unknown>, ProfileError> =>
  Effect.flatMap(Effect.promise(() => import("./StoreOpen.ts")), ({ secureDataDir }) =>
    Effect.try({
      try: () => {
        secureDataDir(dataDir)
        const next = change(readRaw(profileFile(dataDir)) ?? {})
        writeFile(dataDir, next)
        return next
      },
      catch: (e) =>
        e instanceof ProfileError
          ? e
          : new ProfileError({
            message: typeof e === "object" && e !== null && "_tag" in e && e._tag === "StoreError"
              ? (e as unknown as { message: string }).message
              : `cannot write the profile ${profileFile(dataDir)}: ${(e as Error).message ?? String(e)}`
          })
    }))
